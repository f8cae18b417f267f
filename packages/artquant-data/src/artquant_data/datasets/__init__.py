"""Loaders for rated-artwork label files: APDDv2, BAID and generic tables."""

from artquant_data._attributes import APDDV2_ATTRIBUTES
from artquant_data.datasets._apddv2 import load_apddv2
from artquant_data.datasets._baid import load_baid
from artquant_data.datasets._generic import ColumnMapping, load_table

__all__ = ["APDDV2_ATTRIBUTES", "ColumnMapping", "load_apddv2", "load_baid", "load_table"]
