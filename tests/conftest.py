"""The test policy, in one place.

Markers (declared in ``pyproject.toml``):

``cuda``
    needs a visible CUDA device; skipped with the reason where there is none.
``no_cuda``
    checks the errors of a machine without one; skipped where a device is visible.
``mpi``
    runs ``mpiexec``; skipped where it is not installed (``pip install ".[mpi]"`` brings MPICH).
``plot``
    needs matplotlib (the ``plot`` extra); skipped where it is absent.
``slow``
    long statistical checks, the documentation and example runs, compile-heavy tests. The
    default ``pytest`` run deselects them (``addopts = -m "not slow"``); ``pytest -m slow`` runs
    exactly these, so the two commands together run every test (as ``.ci/run`` does).

Nothing here depends on wall-clock time: a test that waits for a child process waits for an
event (a line it prints, a file it writes) under a generous hang guard.
"""
from __future__ import annotations

import importlib.util
import shutil

import pytest

import multiscale as ms

N_CUDA_DEVICES = int(ms.build_info()["cuda_devices"])
MPIEXEC = shutil.which("mpiexec")
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None

_SKIPS = {
    "cuda": (N_CUDA_DEVICES == 0, "no CUDA device visible"),
    "no_cuda": (N_CUDA_DEVICES > 0, "a CUDA device is visible"),
    "mpi": (MPIEXEC is None, "mpiexec not found (pip install \".[mpi]\" brings MPICH)"),
    "plot": (not HAS_MATPLOTLIB, "matplotlib not installed (pip install \".[plot]\")"),
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for marker, (absent, reason) in _SKIPS.items():
            if absent and item.get_closest_marker(marker) is not None:
                item.add_marker(pytest.mark.skip(reason=reason))
