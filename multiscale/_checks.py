"""Argument checks shared by every entry point of the package.

Each function checks one argument, returns it as a plain Python (or NumPy) value and otherwise
raises ``ValueError`` whose message names the argument and shows the value given, e.g.
``dt=-0.001 must be a finite number > 0``. ``name`` is what the message calls the argument; a
prefix names its owner where that helps (``"AveragingOptions dt"``).

Numbers are Python or NumPy numbers; a bool or a string is not a number.
"""
from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np


def _real(name: str, value: Any) -> float:
    """``value`` as a float; raises unless it is a real number (NaN and inf included)."""
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise ValueError(f"{name}={value!r} must be a number")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}={value!r} must be a number") from None


def finite(name: str, value: Any) -> float:
    """``value`` as a float; raises unless it is a finite number."""
    v = _real(name, value)
    if not math.isfinite(v):
        raise ValueError(f"{name}={value!r} must be finite")
    return v


def positive_finite(name: str, value: Any) -> float:
    """``value`` as a float; raises unless it is a finite number > 0."""
    v = _real(name, value)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name}={value!r} must be a finite number > 0")
    return v


def nonnegative_finite(name: str, value: Any) -> float:
    """``value`` as a float; raises unless it is a finite number >= 0."""
    v = _real(name, value)
    if not (math.isfinite(v) and v >= 0):
        raise ValueError(f"{name}={value!r} must be a finite number >= 0")
    return v


def integer(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int; raises unless it is an integer (Python or NumPy, not a bool and not
    a float, even an integral one) >= ``minimum``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    try:
        v = operator.index(value)
    except TypeError:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}") from None
    if v < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return v


def seed(name: str, value: Any) -> int:
    """``value`` as an int; raises unless it is an integer in ``[0, 2**64)`` (a Philox key)."""
    v = integer(name, value, 0)
    if v >= 2**64:
        raise ValueError(f"{name}={value!r} must be an integer in [0, 2**64)")
    return v


def whole_number(name: str, value: Any, minimum: int = 0) -> int:
    """``value`` as an int; raises unless it is a number with an integral value (``5`` or
    ``5.0``, not a bool) >= ``minimum``. For counts that may come from float arithmetic."""
    v = _real(name, value)
    if not (math.isfinite(v) and v == math.floor(v) and v >= minimum):
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(v)


def finite_interval(lo: Any, hi: Any, names: tuple[str, str] = ("lo", "hi")) -> tuple[float, float]:
    """``(lo, hi)`` as floats; raises unless both are finite and ``lo < hi``. ``names`` are what
    the message calls them."""
    a, b = names
    lo_v, hi_v = _real(a, lo), _real(b, hi)
    if not (math.isfinite(lo_v) and math.isfinite(hi_v) and lo_v < hi_v):
        raise ValueError(f"{a}={lo!r} and {b}={hi!r} must be finite with {a} < {b}")
    return lo_v, hi_v


def increasing_array(name: str, values: Any, min_size: int = 2) -> np.ndarray:
    """``values`` as a float64 array; raises unless it is one-dimensional with at least
    ``min_size`` entries, finite and strictly increasing (a grid, or histogram edges). The
    message shows the first offending entry."""
    a = np.asarray(values, dtype=np.float64)
    if a.ndim != 1 or a.size < min_size:
        raise ValueError(f"{name} must be 1-D with at least {min_size} entries; got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be finite; got {float(a[~np.isfinite(a)][0])!r}")
    d = np.diff(a)
    if not np.all(d > 0):
        j = int(np.argmax(~(d > 0)))
        raise ValueError(f"{name} must be strictly increasing; got {name}[{j}]={float(a[j])!r}, "
                         f"{name}[{j + 1}]={float(a[j + 1])!r}")
    return a
