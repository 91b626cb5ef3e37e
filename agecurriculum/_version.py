"""The library's version, in a module of its own: every layer can record it without importing the package."""

__version__ = "0.1.0"
