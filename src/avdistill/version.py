"""The package version, recorded in every output and in every cache key."""

__version__ = "0.1.0"
