"""Real-time customer-engagement scorer."""

__version__ = "0.1.0"
