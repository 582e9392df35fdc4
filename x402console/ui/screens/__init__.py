"""Dialogs and secondary screens."""
