"""Exceptions raised by multiscale."""
from __future__ import annotations

from typing import Any


class SimulationError(RuntimeError):
    """Some paths of an ensemble did not finish (e.g. became non-finite).

    The complete result, including the per-path ``status``, is attached as ``dataset`` so
    that no data is lost when ``throw=True``.
    """

    def __init__(self, message: str, dataset: Any = None) -> None:
        super().__init__(message)
        self.dataset = dataset


class DeviceUnavailableError(RuntimeError):
    """The requested device (e.g. ``"cuda"``) is not available in this build or machine."""
