"""touchpoint: a self-hosted social media engagement monitor for brands."""

__version__ = "0.1.0"
__all__ = ["__version__"]
