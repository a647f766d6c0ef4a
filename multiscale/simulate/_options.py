"""Typed, frozen options for :func:`multiscale.simulate`."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .._checks import finite, integer


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
        # Store plain Python numbers (NumPy scalars included) so options serialise to JSON.
        bins = integer("Histogram bins", self.bins, 1)
        lo, hi = finite("Histogram lo", self.lo), finite("Histogram hi", self.hi)
        if not hi > lo:
            raise ValueError(f"Histogram range lo={lo!r}, hi={hi!r} needs lo < hi")
        object.__setattr__(self, "bins", bins)
        object.__setattr__(self, "lo", lo)
        object.__setattr__(self, "hi", hi)


@dataclass(frozen=True)
class Observables:
    """Streaming statistics computed in the kernel without storing paths.

    For every window of ``window`` time units starting at ``start`` (until ``t_end``), and each
    named state component, the mean and variance over the path-states of the window (times
    ``t`` with ``window_start < t <= window_end``) at which the path was live, and optionally a
    histogram of the same path-states. A path that fails (status NONFINITE) contributes its
    states before the failure; ``obs_count`` says how many path-states were summed.
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
        object.__setattr__(self, "variables", tuple(str(v) for v in self.variables))
        if self.window is not None:
            object.__setattr__(self, "window", finite("Observables window", self.window))
        object.__setattr__(self, "start", finite("Observables start", self.start))
        object.__setattr__(self, "shift", finite("Observables shift", self.shift))
        if self.histogram is not None and not isinstance(self.histogram, Histogram):
            raise ValueError(f"Observables histogram={self.histogram!r} must be a multiscale.Histogram")
