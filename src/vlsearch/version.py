"""The package version, readable without importing the rest of vlsearch."""

__version__ = "0.1.0"
