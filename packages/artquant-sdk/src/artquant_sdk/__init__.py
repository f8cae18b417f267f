"""artquant_sdk: placeholder docstring, replaced as the package is built."""

from importlib.metadata import version as _version

__version__ = _version("artquant-sdk")

__all__ = ["__version__"]
