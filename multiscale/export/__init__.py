"""Export learned surrogates to downstream solvers: C/C++ (header-only evaluator and a C API
library), Fortran (through the C API), PyTorch (TorchScript, ``torch.export``) and SciPy.

>>> import multiscale.export as ex
>>> ex.export_surrogate(sde, "surrogate.mss")   # portable file, docs/surrogate_format.md
>>> ex.check_export(sde, "surrogate.mss", x)     # C API against Python, max relative difference

An :class:`EffectiveSDE` or a ring :class:`LocalEffectiveSDE` (format version 2: the C API gives
the total drift R + U, the closure U, the diagonal noise S and the resolved drift R).
>>> ex.get_include(), ex.get_library_dir(), ex.get_cmake_dir()
"""
from __future__ import annotations

import glob
import os
from pathlib import Path

from .._errors import ExportFormatError
from ._check import check_export
from ._clib import CSurrogate
from ._format import FORMAT_VERSION, export_surrogate, load_export, read_export

_PKG = Path(__file__).resolve().parent.parent
_LIB = "libmultiscale_surrogate.so"


def get_include() -> str:
    """Folder to add to the include path: holds ``multiscale/surrogate/evaluator.h`` (C++,
    header-only) and ``multiscale/surrogate/c_api.h`` (C)."""
    installed = _PKG / "include"
    if (installed / "multiscale" / "surrogate" / "c_api.h").is_file():
        return str(installed)
    source = _PKG.parent / "csrc" / "include"  # a source checkout
    if (source / "multiscale" / "surrogate" / "c_api.h").is_file():
        return str(source)
    raise FileNotFoundError("the multiscale C/C++ headers are not installed with this package")


def get_library_dir() -> str:
    """Folder holding ``libmultiscale_surrogate.so`` (link with ``-lmultiscale_surrogate``).

    The installed package's ``lib/``; in a source checkout, ``$MULTISCALE_LIBDIR`` or a
    ``build/*`` folder that holds the library.
    """
    candidates = [_PKG / "lib"]
    if os.environ.get("MULTISCALE_LIBDIR"):
        candidates.insert(0, Path(os.environ["MULTISCALE_LIBDIR"]))
    built = sorted(glob.glob(str(_PKG.parent / "build" / "*" / _LIB)), key=os.path.getmtime, reverse=True)
    candidates += [Path(p).parent for p in built]  # the newest build first
    for c in candidates:
        if (c / _LIB).is_file():
            return str(c)
    raise FileNotFoundError(f"{_LIB} was not found (looked in {[str(c) for c in candidates]}); "
                            "reinstall multiscale with `pip install .`")


def get_library() -> str:
    """Full path of ``libmultiscale_surrogate.so`` (for ctypes)."""
    return str(Path(get_library_dir()) / _LIB)


def get_cmake_dir() -> str:
    """Folder of ``multiscaleConfig.cmake``: pass as ``-Dmultiscale_DIR=...`` to CMake, then
    ``find_package(multiscale CONFIG REQUIRED)`` and link ``multiscale::surrogate`` (C API) or
    ``multiscale::evaluator`` (header-only C++)."""
    d = _PKG / "share" / "cmake" / "multiscale"
    if not (d / "multiscaleConfig.cmake").is_file():
        raise FileNotFoundError("the CMake package is installed with `pip install .` only "
                                "(not in a source checkout)")
    return str(d)


def __getattr__(name: str):
    if name in ("export_torchscript", "export_torch_program"):
        from . import _torchscript as _torch

        return getattr(_torch, name)
    raise AttributeError(f"module 'multiscale.export' has no attribute {name!r}")


__all__ = ["CSurrogate", "FORMAT_VERSION", "ExportFormatError", "check_export", "export_surrogate",
           "export_torch_program", "export_torchscript", "get_cmake_dir", "get_include", "get_library",
           "get_library_dir", "load_export", "read_export"]
