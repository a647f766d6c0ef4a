"""Build information and device selection."""
from __future__ import annotations

import functools
import os
from typing import Any

from . import _core
from ._errors import DeviceUnavailableError


@functools.lru_cache(maxsize=1)
def _static_info() -> dict[str, Any]:
    return dict(_core.build_info())


def build_info() -> dict[str, Any]:
    """How the compiled kernels were built and what this machine offers.

    Returns
    -------
    dict
        ``version``, ``compiler``, ``cxx_flags``, ``openmp`` (the ``_OPENMP`` date or None),
        ``max_threads``, ``simd``, ``lanes_float64``/``lanes_float32`` (paths per SIMD block),
        ``cuda_compiled``, ``cuda_architectures``, ``cuda_runtime``, ``cuda_devices``
        (visible devices, 0 without a GPU), ``cuda_device_names``, ``rng``.
    """
    return dict(_static_info())


def parse_device(device: str) -> int:
    """``"cpu"`` -> -1; ``"cuda"``/``"cuda:N"`` -> N, after checking the device exists."""
    if not isinstance(device, str):
        raise ValueError(f"device={device!r} must be 'cpu', 'cuda' or 'cuda:N'")
    d = device.strip().lower()
    if d == "cpu":
        return -1
    if d == "cuda" or d.startswith("cuda:"):
        index = 0
        if d.startswith("cuda:"):
            try:
                index = int(d[5:])
            except ValueError:
                raise ValueError(f"device={device!r} must be 'cpu', 'cuda' or 'cuda:N'") from None
        info = _static_info()
        if not info["cuda_compiled"]:
            raise DeviceUnavailableError(
                f"device={device!r}: multiscale was built without CUDA kernels (no nvcc at build "
                "time); reinstall with nvcc on PATH, or use device='cpu'")
        if info["cuda_devices"] == 0:
            raise DeviceUnavailableError(
                f"device={device!r}: CUDA kernels are compiled but no CUDA device is visible "
                f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r}); use device='cpu'")
        if not 0 <= index < info["cuda_devices"]:
            raise DeviceUnavailableError(
                f"device={device!r}: only {info['cuda_devices']} CUDA device(s) visible")
        return index
    raise ValueError(f"device={device!r} must be 'cpu', 'cuda' or 'cuda:N'")
