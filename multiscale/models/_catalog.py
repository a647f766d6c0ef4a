"""The compiled model catalogue: names, dimensions, parameters and defaults.

The C++ structs in ``csrc/include/multiscale/models/catalog.h`` hold the numerics; this
module holds everything a user reads about them. ``ModelInfo.id`` is the index into the
compiled ``MS_MODEL_LIST``; parameter order matches the struct's ``from_params``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np


class Scaling(Enum):
    """How the fast variables are scaled by ``eps``."""

    AVERAGING = "averaging"  #: dY = g/eps dt + b/sqrt(eps) dV
    HOMOGENIZATION = "homogenization"  #: dX = (f0/eps + f1) dt + ..., dY = g/eps^2 dt + b/eps dV
    NONE = "none"  #: single-scale SDE, or eps enters the model itself (hidden fast scale)


@dataclass(frozen=True)
class Param:
    """A runtime model parameter."""

    name: str
    default: float
    description: str
    #: constraint check returning an error fragment, or None when the value is valid
    check: Callable[[float], str | None] | None = None


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _nonnegative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _nonzero(v: float) -> str | None:
    return None if v != 0 else "must be nonzero"


def _int_at_least(k: int) -> Callable[[float], str | None]:
    def check(v: float) -> str | None:
        if v != math.floor(v) or v < k:
            return f"must be an integer >= {k}"
        return None

    return check


@dataclass(frozen=True)
class ModelInfo:
    """Description of a catalogue model.

    Attributes
    ----------
    name : str
        Catalogue name used by :func:`multiscale.simulate` and the CLI.
    id : int
        Index of the compiled model.
    description : str
        One-line description.
    equations : str
        The SDE in Itô form.
    scaling : Scaling
        How ``eps`` scales the fast dynamics.
    params : tuple of Param
        Runtime parameters, in compiled order.
    uses_eps : bool
        Whether ``eps`` enters the dynamics.
    default_eps : float or None
        The scale separation used when none is given.
    reference : str
        Where exact answers for the model are documented.
    exact_ou : bool
        Whether the fast drift is linear, ``-theta (y - mu(x))``, so the exact
        Ornstein-Uhlenbeck fast step applies.
    """

    name: str
    id: int
    description: str
    equations: str
    scaling: Scaling
    params: tuple[Param, ...]
    uses_eps: bool
    default_eps: float | None
    reference: str
    exact_ou: bool
    _dims: Callable[[Mapping[str, float]], tuple[int, int]]
    _names: Callable[[Mapping[str, float]], tuple[list[str], list[str]]]
    _initial: Callable[[Mapping[str, float]], tuple[np.ndarray, np.ndarray]]
    aliases: tuple[str, ...] = field(default=())
    #: the compiled module holding this model (None: the built-in ``multiscale._core``)
    core: Any = field(default=None, compare=False, repr=False)
    #: the user model's definition (None for catalogue entries: see :attr:`model`)
    source: Any = field(default=None, compare=False, repr=False)

    @property
    def model(self) -> Any:
        """The model written in the model language (:class:`~multiscale.Model`): the user's
        definition, or the catalogue entry's language form, which compiles to bitwise the same
        paths. Use it for torch evaluation (``.functions(...)``) or as a template for a variant."""
        if self.source is not None:
            return self.source
        from ._catalog_source import SOURCES

        return SOURCES[self.name]

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: Mapping[str, float] | None) -> dict[str, float]:
        """Defaults updated with ``params``; raises ``ValueError`` naming any bad entry."""
        out = self.defaults
        for key, value in (params or {}).items():
            if key not in out:
                raise ValueError(
                    f"unknown parameter {key!r} for model {self.name!r}; "
                    f"its parameters are {', '.join(self.param_names) or '(none)'}"
                )
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key}={value!r} of model {self.name!r} is not a number") from None
            out[key] = v
        for p in self.params:
            v = out[p.name]
            if not math.isfinite(v):
                raise ValueError(f"parameter {p.name}={v} of model {self.name!r} must be finite")
            if p.check is not None and (msg := p.check(v)) is not None:
                raise ValueError(f"parameter {p.name}={v:g} of model {self.name!r} {msg}")
        return out

    def dims(self, params: Mapping[str, float] | None = None) -> tuple[int, int]:
        """(slow dimension m, fast dimension n) for the given parameters."""
        return self._dims(self.resolve_params(params))

    def state_names(self, params: Mapping[str, float] | None = None) -> tuple[list[str], list[str]]:
        """Names of the slow and fast state components."""
        return self._names(self.resolve_params(params))

    def default_initial(self, params: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Default initial slow and fast state, shapes (m,) and (n,)."""
        return self._initial(self.resolve_params(params))

    def coefficients(self, x: Any, y: Any = None, params: Mapping[str, float] | None = None,
                     eps: float | None = None) -> dict[str, np.ndarray]:
        """The compiled model's coefficients at a batch of states (double precision).

        Parameters
        ----------
        x : array_like, shape (B, m) or (m,)
            Slow states.
        y : array_like, shape (B, n) or (n,), optional
            Fast states (omit for models without fast variables).
        params : dict, optional
            Parameter values (defaults otherwise).
        eps : float, optional
            Scale separation, for models whose coefficients name it (default: ``default_eps``).

        Returns
        -------
        dict of str to ndarray
            ``f`` (B, m) slow drift, ``f0`` (B, m) the 1/eps part of a homogenization drift
            (zeros otherwise), ``a`` (B, m) slow noise, ``g`` (B, n) fast drift and ``b`` (B, n)
            fast noise, unscaled: the 1/eps factors of the scaling are not applied.
        """
        from .. import _core

        p = self.resolve_params(params)
        m, n = self._dims(p)
        x = np.asarray(x, dtype=float)
        xb = np.ascontiguousarray(x.reshape(-1, m) if x.ndim <= 1 else x)
        if xb.ndim != 2 or xb.shape[1] != m:
            raise ValueError(f"x has shape {x.shape}; model {self.name!r} has {m} slow variables")
        if y is None and n > 0:
            raise ValueError(f"model {self.name!r} has {n} fast variables: give y")
        yb = np.zeros((xb.shape[0], 0)) if y is None else np.asarray(y, dtype=float)
        yb = np.ascontiguousarray(yb.reshape(-1, n) if yb.ndim <= 1 else yb)
        if yb.shape != (xb.shape[0], n):
            raise ValueError(f"y has shape {np.shape(y)}; expected ({xb.shape[0]}, {n})")
        e = float(self.default_eps if eps is None else eps) if self.uses_eps else 1.0
        return dict((self.core or _core).model_coefficients(self.id, np.array(list(p.values()), dtype=float), e,
                                                           xb, yb))

    def summary(self) -> str:
        """Multi-line human-readable description (used by ``multiscale models``)."""
        m, n = self.dims()
        dims = f"slow {m}, fast {n}" if self.name != "lorenz96" else "slow K, fast J*K"
        eps = f"eps default {self.default_eps:g}" if self.uses_eps else "eps not used"
        lines = [f"{self.name}  [{dims}; scaling {self.scaling.value}; {eps}]",
                 f"    {self.description}",
                 f"    {self.equations}"]
        for p in self.params:
            lines.append(f"    {p.name:<8} = {p.default:<8g} {p.description}")
        lines.append(f"    exact answers: {self.reference}")
        return "\n".join(lines)


def _fixed(m: int, n: int) -> Callable[[Mapping[str, float]], tuple[int, int]]:
    return lambda p: (m, n)


def _names_1d(n_fast: int) -> Callable[[Mapping[str, float]], tuple[list[str], list[str]]]:
    return lambda p: (["x"], ["y"] if n_fast else [])


def _init(x: float, y: float | None = None) -> Callable[[Mapping[str, float]], tuple[np.ndarray, np.ndarray]]:
    return lambda p: (np.array([x], float), np.array([] if y is None else [y], float))


def _l96_dims(p: Mapping[str, float]) -> tuple[int, int]:
    K, J = int(p["K"]), int(p["J"])
    return K, K * J


def _l96_names(p: Mapping[str, float]) -> tuple[list[str], list[str]]:
    K, J = int(p["K"]), int(p["J"])
    return [f"x{k}" for k in range(K)], [f"y{k}_{j}" for k in range(K) for j in range(J)]


def _l96_initial(p: Mapping[str, float]) -> tuple[np.ndarray, np.ndarray]:
    # The uniform state X_k = F is an (unstable) equilibrium; a small deterministic
    # perturbation starts the chaos reproducibly.
    K, J = int(p["K"]), int(p["J"])
    x = np.full(K, p["F"], float)
    x[0] += 0.01
    y = 0.01 * ((np.arange(K * J) % 7) - 3) / 3.0
    return x, y


_SIGMA = Param("sigma", 1.0, "slow noise amplitude", _nonnegative)

CATALOG: tuple[ModelInfo, ...] = (
    ModelInfo(
        "fast_ou_linear", 0,
        "averaging with a linear fast OU process (REFERENCE problem 1a); averaged drift 1.5x - x^3",
        "dX = (X - X^3 + c Y) dt + sigma dU;  dY = -(Y - X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING, (Param("c", 0.5, "coupling to the fast variable"), _SIGMA),
        True, 0.01, "REFERENCE_PROBLEMS.md problem 1a", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem1a",)),
    ModelInfo(
        "fast_ou_quadratic", 1,
        "as fast_ou_linear with coupling c Y^2, sensitive to the fast variance (problem 1b)",
        "dX = (X - X^3 + c Y^2) dt + sigma dU;  dY = -(Y - X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING, (Param("c", 0.5, "coupling to the fast variable"), _SIGMA),
        True, 0.01, "REFERENCE_PROBLEMS.md problem 1b", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem1b",)),
    ModelInfo(
        "tilted_double_well", 2,
        "slow OU coupled to a tilted fast double well; bistability induced by the fast variable (problem 2)",
        "dX = (a0 - X + lam Y) dt + sqrt(2) dU;  dY = -(Y^3 - Y - lam X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING,
        (Param("a0", 0.1, "constant slow forcing"), Param("lam", 1.5, "slow/fast coupling")),
        True, 0.03, "REFERENCE_PROBLEMS.md problem 2", False,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem2",)),
    ModelInfo(
        "periodic_potential_quadratic", 3,
        "diffusion in V(x) = x^2/2 plus a fast periodic potential A cos(2 pi x/eps) (problem 3a; no explicit y)",
        "dX = -V'(X) dt + (2 pi A/eps) sin(2 pi X/eps) dt + sqrt(2 sigma) dW,  V = x^2/2",
        Scaling.NONE,
        (Param("A", 1.0, "amplitude of the periodic potential"),
         Param("sigma", 0.5, "temperature (noise sqrt(2 sigma))", _positive)),
        True, 0.2, "REFERENCE_PROBLEMS.md problem 3a", False,
        _fixed(1, 0), _names_1d(0), _init(0.0), ("problem3a",)),
    ModelInfo(
        "periodic_potential_quartic", 4,
        "diffusion in V(x) = x^4/4 - x^2/2 plus a fast periodic potential (problem 3b; no explicit y)",
        "dX = -V'(X) dt + (2 pi A/eps) sin(2 pi X/eps) dt + sqrt(2 sigma) dW,  V = x^4/4 - x^2/2",
        Scaling.NONE,
        (Param("A", 1.0, "amplitude of the periodic potential"),
         Param("sigma", 0.5, "temperature (noise sqrt(2 sigma))", _positive)),
        True, 0.2, "REFERENCE_PROBLEMS.md problem 3b", False,
        _fixed(1, 0), _names_1d(0), _init(-1.0), ("problem3b",)),
    ModelInfo(
        "fast_ou_noise", 5,
        "homogenization with fast OU noise; the limit carries the Ito-Stratonovich correction (problem 4)",
        "dX = (-X - X^3 + sqrt(1 + X^2) Y/eps) dt;  dY = -Y/eps^2 dt + sqrt(2)/eps dV",
        Scaling.HOMOGENIZATION, (), True, 0.05, "REFERENCE_PROBLEMS.md problem 4", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem4",)),
    ModelInfo(
        "double_well", 6,
        "single-scale symmetric double well, metastable for small sigma (problem 5)",
        "dX = (X - X^3) dt + sigma dW",
        Scaling.NONE, (Param("sigma", 0.4, "noise amplitude", _nonnegative),),
        False, None, "REFERENCE_PROBLEMS.md problem 5", False,
        _fixed(1, 0), _names_1d(0), _init(-1.0), ("problem5",)),
    ModelInfo(
        "ornstein_uhlenbeck", 7,
        "single-scale Ornstein-Uhlenbeck process (problem 6a with theta = D = 1)",
        "dX = -theta X dt + sqrt(2 D) dW",
        Scaling.NONE,
        (Param("theta", 1.0, "mean-reversion rate"), Param("D", 1.0, "diffusion coefficient", _nonnegative)),
        False, None, "REFERENCE_PROBLEMS.md problem 6a", False,
        _fixed(1, 0), _names_1d(0), _init(0.1), ("problem6a", "ou")),
    ModelInfo(
        "lorenz96", 8,
        "two-scale Lorenz-96 (K slow, J*K fast on one ring); time-scale ratio c, optional additive noise",
        "dX_k = [-X_{k-1}(X_{k-2} - X_{k+1}) - X_k + F - (h c/b) sum_j Y_jk] dt + sigma_x dU; "
        "dY_jk = [-c b Y_{j+1,k}(Y_{j+2,k} - Y_{j-1,k}) - c Y_jk + (h c/b) X_k] dt + sigma_y dV",
        Scaling.NONE,
        (Param("K", 8, "number of slow variables", _int_at_least(4)),
         Param("J", 32, "fast variables per slow variable", _int_at_least(1)),
         Param("h", 1.0, "coupling strength"), Param("b", 10.0, "fast amplitude ratio", _nonzero),
         Param("c", 10.0, "time-scale ratio (plays the role of 1/eps)", _positive),
         Param("F", 20.0, "forcing"),
         Param("sigma_x", 0.0, "additive slow noise", _nonnegative),
         Param("sigma_y", 0.0, "additive fast noise", _nonnegative)),
        False, None, "REFERENCE_PROBLEMS.md problem 7 (published closure fits)", False,
        _l96_dims, _l96_names, _l96_initial, ("l96", "problem7")),
)

_BY_NAME: dict[str, ModelInfo] = {}
for _m in CATALOG:
    _BY_NAME[_m.name] = _m
    for _a in _m.aliases:
        _BY_NAME[_a] = _m


def get_model(name: Any) -> ModelInfo:
    """Look up a catalogue model by name or alias (e.g. ``"fast_ou_linear"`` or ``"problem1a"``),
    or compile a user :class:`~multiscale.Model` (cached after the first use)."""
    if isinstance(name, ModelInfo):
        return name
    from ._model import Model

    if isinstance(name, Model):
        from ._user import user_model_info

        return user_model_info(name)
    try:
        return _BY_NAME[str(name).lower()]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; available: {', '.join(m.name for m in CATALOG)}"
        ) from None


def list_models() -> list[ModelInfo]:
    """All catalogue models, in catalogue order."""
    return list(CATALOG)
