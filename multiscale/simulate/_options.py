"""Typed, frozen options for :func:`multiscale.simulate`."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class FastStep(Enum):
    """Update rule for the fast variables.

    ``AUTO`` uses the exact Ornstein-Uhlenbeck transition where the model's fast drift is
    linear in ``y`` (no bias in the fast invariant measure whatever ``dt/eps``) and
    Euler-Maruyama otherwise.
    """

    AUTO = "auto"
    EULER = "euler"
    EXACT_OU = "exact_ou"


class Precision(Enum):
    """Floating type of the kernels. ``FLOAT32`` draws its normals from 23-bit uniforms
    (|z| <= 5.6) and is meant for throughput runs whose statistics tolerate that."""

    FLOAT64 = "float64"
    FLOAT32 = "float32"


@dataclass(frozen=True)
class Histogram:
    """Histogram of each observed variable per window: ``bins`` equal bins on [lo, hi),
    with separate underflow/overflow counts (no sample is dropped)."""

    bins: int
    lo: float
    hi: float

    def __post_init__(self) -> None:
        if not isinstance(self.bins, int) or self.bins < 1:
            raise ValueError(f"Histogram bins={self.bins!r} must be a positive integer")
        if not (float(self.hi) > float(self.lo)):
            raise ValueError(f"Histogram range lo={self.lo!r}, hi={self.hi!r} needs lo < hi")


@dataclass(frozen=True)
class Observables:
    """Streaming statistics computed in the kernel without storing paths.

    For every window of ``window`` time units starting at ``start`` (until ``t_end``), and each
    named state component, the mean and variance over all live paths and all states in the
    window (times ``t`` with ``window_start < t <= window_end``), and optionally a histogram.
    Memory is proportional to ``n_paths``, not to the number of steps.

    Parameters
    ----------
    variables : tuple of str
        State component names (e.g. ``("x",)``), at most 8.
    window : float or None
        Window length in time units (a multiple of ``dt`` dividing ``t_end - start``);
        None for a single window.
    start : float
        Time before which nothing is accumulated (burn-in).
    histogram : Histogram or None
    shift : float
        Subtracted from values before summing (improves the variance when ``|mean| >> std``);
        results are reported unshifted.
    """

    variables: tuple[str, ...]
    window: float | None = None
    start: float = 0.0
    histogram: Histogram | None = None
    shift: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.variables, str):
            object.__setattr__(self, "variables", (self.variables,))
        object.__setattr__(self, "variables", tuple(self.variables))
        if not self.variables:
            raise ValueError("Observables needs at least one variable")
        if len(self.variables) > 8:
            raise ValueError(f"Observables takes at most 8 variables, got {len(self.variables)}")
