"""The one place the version number lives."""

__all__ = ["__version__"]

__version__ = "0.1.0"
