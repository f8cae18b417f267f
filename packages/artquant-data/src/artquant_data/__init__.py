"""artquant_data: placeholder docstring, replaced as the package is built."""

from importlib.metadata import version as _version

__version__ = _version("artquant-data")

__all__ = ["__version__"]
