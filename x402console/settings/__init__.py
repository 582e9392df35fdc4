"""Pieces of the configuration module; the public API is x402console.config."""
