"""Typed options of the learning layer."""
from __future__ import annotations

import enum
from dataclasses import dataclass

from .._checks import integer, nonnegative_finite, positive_finite
from ..simulate._options import Precision


class DiffusionForm(enum.Enum):
    """Parametrisation of the diffusion matrix ``A(x) = S(x) S(x)^T``.

    ``CHOLESKY``: full positive-definite ``A`` through a lower-triangular ``S`` with a positive
    diagonal; ``DIAGONAL``: ``S = diag(s_1(x), ..., s_m(x))``; ``SCALAR``: ``S = s(x) I``.
    """

    CHOLESKY = "cholesky"
    DIAGONAL = "diagonal"
    SCALAR = "scalar"


class TrajectoryMethod(enum.Enum):
    """Transition density used when learning from coarse trajectories.

    ``EULER``: the Euler-Maruyama Gaussian ``N(x + b D, A D)`` at lag ``D`` (naive: biased when
    the lag is not small against the slow scale, and wrong when it is not large against the
    fast scale). ``MULTISCALE``: Gaussian with the second-order (Kessler) moment expansion
    ``x + b D + (L b) D^2/2`` and ``A D + (...) D^2/2``, fitted jointly at lags ``D`` and
    ``2 D`` with a learned lag-independent covariance ``C`` that absorbs the fast-scale
    fluctuation of the slow variable (the ``eps * corrector`` part of ``X``), so that only the
    part of the increment variance that grows linearly with the lag is read as diffusion.
    """

    EULER = "euler"
    MULTISCALE = "multiscale"


@dataclass(frozen=True)
class SurrogateOptions:
    """Architecture and training settings of :class:`EffectiveSDEEstimator`.

    Parameters
    ----------
    members : int
        Deep-ensemble size (>= 2; >= 5 recommended). The members are one batched network.
    hidden : tuple of int
        Hidden layer widths of each member's drift and diffusion networks (tanh).
    diffusion : DiffusionForm
    gradient : bool
        Gradient structure: ``b = -A grad U / 2 + div A / 2``, so the surrogate has the
        invariant density ``exp(-U) / Z`` and an interpretable effective potential ``U``.
    epochs : int
        Maximum Adam epochs (full-batch for estimates; mini-batch steps for trajectories).
    lr : float
        Adam learning rate.
    lbfgs_steps : int
        L-BFGS refinement iterations after Adam (estimates pathway; 0 to skip).
    batch_size : int
        Mini-batch size (transition pairs) for the trajectories pathway.
    weight_decay : float
        L2 penalty on the weights (relative to the data term).
    validation_fraction : float
        Fraction held out per member for early stopping, in [0, 0.5).
    patience : int
        Epochs without validation improvement before stopping.
    bootstrap : bool
        Resample the data per member (parametric bootstrap of the estimates with their standard
        errors; Poisson path weights for trajectories), so the ensemble spread reflects the
        data's noise as well as the initialisation.
    method : TrajectoryMethod
    seed : int
        Seeds initialisation, bootstrap and splits.
    precision : multiscale.Precision
        Arithmetic of the trajectories pathway's training (default ``FLOAT32``: twice the
        throughput, and the transition likelihood of increments needs no more); the model is
        stored and evaluated in float64 either way. The estimates pathway (small, full-batch,
        L-BFGS) always trains in float64.
    euler_warmup : float
        Fraction of the Adam steps of ``method=MULTISCALE`` that train on the first-order
        (Euler) moments, about four times cheaper per step, before the second-order moments
        take over for the rest (default 0.5); 0 trains second-order throughout.
    threads : int, optional
        Torch intra-op threads during training (default 1: the members are one batched
        network, and intra-op threads on its small matrices spin against other work on a
        shared machine; ``None`` keeps torch's setting).
    workers : int
        Threads of the trajectories pathway (default 2). Its members train in lock-step groups
        of about five (two groups from four members; ``multiscale.surrogate.member_groups``),
        a thread each, at most ``workers`` of them computing at once. The groups depend on
        ``members`` only, so the fitted model does not depend on ``workers``; each group's
        products run on one core, which is how training uses several cores without intra-op
        threads (see ``threads``).
    progress : bool
        Print a progress line (a bar on a terminal).
    """

    members: int = 10
    hidden: tuple[int, ...] = (48, 48)
    diffusion: DiffusionForm = DiffusionForm.CHOLESKY
    gradient: bool = False
    epochs: int = 1500
    lr: float = 1e-2
    lbfgs_steps: int = 1500
    batch_size: int = 2048
    weight_decay: float = 1e-6
    validation_fraction: float = 0.2
    patience: int = 300
    bootstrap: bool = True
    method: TrajectoryMethod = TrajectoryMethod.MULTISCALE
    seed: int = 0
    precision: Precision = Precision.FLOAT32
    euler_warmup: float = 0.5
    threads: int | None = 1
    workers: int = 2
    progress: bool = False

    def __post_init__(self) -> None:
        def is_int(v: object) -> bool:
            return isinstance(v, int) and not isinstance(v, bool)

        set_ = object.__setattr__  # frozen: integers are stored as Python ints (JSON-ready)
        set_(self, "members", integer("members", self.members, 2))
        if (not isinstance(self.hidden, tuple) or len(self.hidden) == 0
                or not all(is_int(h) and 1 <= h <= 4096 for h in self.hidden)):
            raise ValueError(f"hidden={self.hidden!r} must be a non-empty tuple of widths in [1, 4096]")
        if not isinstance(self.diffusion, DiffusionForm):
            raise ValueError(f"diffusion={self.diffusion!r} must be a multiscale.DiffusionForm")
        if not isinstance(self.method, TrajectoryMethod):
            raise ValueError(f"method={self.method!r} must be a multiscale.TrajectoryMethod")
        if not isinstance(self.gradient, bool):
            raise ValueError(f"gradient={self.gradient!r} must be a bool")
        for name in ("epochs", "lbfgs_steps", "patience"):
            set_(self, name, integer(name, getattr(self, name), 0))
        set_(self, "batch_size", integer("batch_size", self.batch_size, 1))
        positive_finite("lr", self.lr)
        nonnegative_finite("weight_decay", self.weight_decay)
        v = self.validation_fraction
        if not isinstance(v, (int, float)) or isinstance(v, bool) or not 0.0 <= v < 0.5:
            raise ValueError(f"validation_fraction={v!r} must be in [0, 0.5)")
        if not isinstance(self.bootstrap, bool) or not isinstance(self.progress, bool):
            raise ValueError("bootstrap and progress must be bools")
        if not is_int(self.seed) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed={self.seed!r} must be an integer in [0, 2**63)")
        if not isinstance(self.precision, Precision):
            raise ValueError(f"precision={self.precision!r} must be a multiscale.Precision")
        w = self.euler_warmup
        if not isinstance(w, (int, float)) or isinstance(w, bool) or not 0.0 <= w < 1.0:
            raise ValueError(f"euler_warmup={w!r} must be in [0, 1)")
        if self.threads is not None:
            set_(self, "threads", integer("threads", self.threads, 1))
        set_(self, "workers", integer("workers", self.workers, 1))
