"""drill/sim"""
