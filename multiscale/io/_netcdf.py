"""Datasets are written as netCDF4 (HDF5) files via h5netcdf, readable by
``xarray.open_dataset(path)`` with no extra arguments."""
from __future__ import annotations

import os
from pathlib import Path

import xarray as xr


def save_dataset(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write ``ds`` to ``path`` (netCDF4/HDF5), atomically: a crash never leaves a partial file.

    Returns the path written.
    """
    path = Path(path)
    if path.parent and not path.parent.exists():
        raise ValueError(f"output directory {str(path.parent)!r} does not exist")
    tmp = path.with_name(path.name + ".partial")
    ds.to_netcdf(tmp, engine="h5netcdf")
    os.replace(tmp, path)
    return path


def open_dataset(path: str | os.PathLike) -> xr.Dataset:
    """Read a dataset written by :func:`save_dataset` fully into memory."""
    with xr.open_dataset(path, engine="h5netcdf") as ds:
        return ds.load()
