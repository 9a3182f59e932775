"""Type information for the masker's compiled core (services/masker/core)."""

__version__: str
