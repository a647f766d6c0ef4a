"""Options of the averaged-dynamics estimator."""
from __future__ import annotations

from dataclasses import dataclass

from .._checks import integer, nonnegative_finite, positive_finite
from ..simulate._options import FastStep


@dataclass(frozen=True)
class AveragingOptions:
    """Accuracy controls of the frozen-x micro-solver. Times are in the fast process's own
    time units (``t/eps`` for averaging models, ``t/eps**2`` for homogenization, model time for
    models without eps such as Lorenz-96).

    Parameters
    ----------
    dt : float
        Fast-time step.
    burn_in : float
        Fast time run before averaging (relaxation to the frozen-x invariant measure).
    time : float
        Averaging time per replica (per round in adaptive mode).
    replicas : int
        Independent fast processes per slow point.
    batch : float
        Batch (block) length for batch means, tau_int and Green-Kubo block integrals; must be
        much longer than the fast correlation time (checked: ``converged`` requires
        ``batch >= 5 tau_int``). ``time`` must be a multiple of it.
    fast_step : FastStep
        ``AUTO``: exact OU transition where the model's fast drift is linear.
    target_stderr : float or None
        Adaptive mode: keep adding ``time`` per replica until every component's standard error
        is at most this, or ``max_time`` is spent.
    max_time : float or None
        Adaptive budget of averaging time per replica (default ``20 * time``).
    corrector : bool
        Homogenization: estimate the corrector drift ``E[(grad_x Phi) f0]`` with shadow fast
        processes (costs ``2 m`` extra fast processes per replica).
    fd_step : float
        Central-difference step in x for the corrector.
    """

    dt: float = 0.01
    burn_in: float = 10.0
    time: float = 200.0
    replicas: int = 16
    batch: float = 10.0
    fast_step: FastStep = FastStep.AUTO
    target_stderr: float | None = None
    max_time: float | None = None
    corrector: bool = True
    fd_step: float = 1e-4

    def __post_init__(self) -> None:
        for name in ("dt", "time", "batch", "fd_step"):
            object.__setattr__(self, name, positive_finite(f"AveragingOptions {name}", getattr(self, name)))
        object.__setattr__(self, "burn_in", nonnegative_finite("AveragingOptions burn_in", self.burn_in))
        object.__setattr__(self, "replicas", integer("AveragingOptions replicas", self.replicas, 1))
        if not isinstance(self.fast_step, FastStep):
            raise ValueError(f"AveragingOptions fast_step={self.fast_step!r} must be a multiscale.FastStep")
        for name in ("target_stderr", "max_time"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, positive_finite(f"AveragingOptions {name}", v))
