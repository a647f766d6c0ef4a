"""HDF5 / netCDF4 I/O conventions."""
from ._netcdf import open_dataset, save_dataset

__all__ = ["open_dataset", "save_dataset"]
