"""x402console: incident-response console and drill environment for the x402 ZK payment system."""

__version__ = "0.1.0"
