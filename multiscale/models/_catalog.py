"""The compiled model catalogue: names, dimensions, parameters and defaults.

The C++ structs in ``csrc/include/multiscale/models/catalog.h`` hold the numerics; this
module holds everything a user reads about them. ``ModelInfo.id`` is the index into the
compiled ``MS_MODEL_LIST``; parameter order matches the struct's ``from_params``.
"""
from __future__ import annotations

import math
from dataclasses import replace
from functools import partial
from typing import Any, Callable, Mapping

import numpy as np

from ._model import Model
from ._types import ModelInfo, Param, Scaling
from ._user import user_model_info


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

_ENTRIES: tuple[ModelInfo, ...] = (
    ModelInfo(
        "fast_ou_linear", 0,
        "averaging with a linear fast OU process (problem 1a); averaged drift 1.5x - x^3",
        "dX = (X - X^3 + c Y) dt + sigma dU;  dY = -(Y - X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING, (Param("c", 0.5, "coupling to the fast variable"), _SIGMA),
        True, 0.01, "docs/reference_problems.md#problem-1a-fast_ou_linear", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem1a",)),
    ModelInfo(
        "fast_ou_quadratic", 1,
        "as fast_ou_linear with coupling c Y^2, sensitive to the fast variance (problem 1b)",
        "dX = (X - X^3 + c Y^2) dt + sigma dU;  dY = -(Y - X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING, (Param("c", 0.5, "coupling to the fast variable"), _SIGMA),
        True, 0.01, "docs/reference_problems.md#problem-1b-fast_ou_quadratic", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem1b",)),
    ModelInfo(
        "tilted_double_well", 2,
        "slow OU coupled to a tilted fast double well; bistability induced by the fast variable (problem 2)",
        "dX = (a0 - X + lam Y) dt + sqrt(2) dU;  dY = -(Y^3 - Y - lam X)/eps dt + sqrt(2/eps) dV",
        Scaling.AVERAGING,
        (Param("a0", 0.1, "constant slow forcing"), Param("lam", 1.5, "slow/fast coupling")),
        True, 0.03, "docs/reference_problems.md#problem-2-tilted_double_well", False,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem2",)),
    ModelInfo(
        "periodic_potential_quadratic", 3,
        "diffusion in V(x) = x^2/2 plus a fast periodic potential A cos(2 pi x/eps) (problem 3a; no explicit y)",
        "dX = -V'(X) dt + (2 pi A/eps) sin(2 pi X/eps) dt + sqrt(2 sigma) dW,  V = x^2/2",
        Scaling.NONE,
        (Param("A", 1.0, "amplitude of the periodic potential"),
         Param("sigma", 0.5, "temperature (noise sqrt(2 sigma))", _positive)),
        True, 0.2, "docs/reference_problems.md#problem-3a-periodic_potential_quadratic", False,
        _fixed(1, 0), _names_1d(0), _init(0.0), ("problem3a",)),
    ModelInfo(
        "periodic_potential_quartic", 4,
        "diffusion in V(x) = x^4/4 - x^2/2 plus a fast periodic potential (problem 3b; no explicit y)",
        "dX = -V'(X) dt + (2 pi A/eps) sin(2 pi X/eps) dt + sqrt(2 sigma) dW,  V = x^4/4 - x^2/2",
        Scaling.NONE,
        (Param("A", 1.0, "amplitude of the periodic potential"),
         Param("sigma", 0.5, "temperature (noise sqrt(2 sigma))", _positive)),
        True, 0.2, "docs/reference_problems.md#problem-3b-periodic_potential_quartic", False,
        _fixed(1, 0), _names_1d(0), _init(-1.0), ("problem3b",)),
    ModelInfo(
        "fast_ou_noise", 5,
        "homogenization with fast OU noise; the limit carries the Ito-Stratonovich correction (problem 4)",
        "dX = (-X - X^3 + sqrt(1 + X^2) Y/eps) dt;  dY = -Y/eps^2 dt + sqrt(2)/eps dV",
        Scaling.HOMOGENIZATION, (), True, 0.05, "docs/reference_problems.md#problem-4-fast_ou_noise", True,
        _fixed(1, 1), _names_1d(1), _init(0.0, 0.0), ("problem4",)),
    ModelInfo(
        "double_well", 6,
        "single-scale symmetric double well, metastable for small sigma (problem 5)",
        "dX = (X - X^3) dt + sigma dW",
        Scaling.NONE, (Param("sigma", 0.4, "noise amplitude", _nonnegative),),
        False, None, "docs/reference_problems.md#problem-5-double_well", False,
        _fixed(1, 0), _names_1d(0), _init(-1.0), ("problem5",)),
    ModelInfo(
        "ornstein_uhlenbeck", 7,
        "single-scale Ornstein-Uhlenbeck process (problem 6a with theta = D = 1)",
        "dX = -theta X dt + sqrt(2 D) dW",
        Scaling.NONE,
        (Param("theta", 1.0, "mean-reversion rate"), Param("D", 1.0, "diffusion coefficient", _nonnegative)),
        False, None, "docs/reference_problems.md#problem-6a-ornstein_uhlenbeck", False,
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
        False, None, "docs/reference_problems.md#problem-7-lorenz96", False,
        _l96_dims, _l96_names, _l96_initial, ("l96", "problem7")),
)


def _language_form(name: str) -> Model:
    """The catalogue entry ``name`` written in the model language (parsed on first use)."""
    from ._catalog_source import SOURCES

    return SOURCES[name]


#: The catalogue, in compiled order; each entry's :attr:`ModelInfo.model` is its language form.
CATALOG: tuple[ModelInfo, ...] = tuple(replace(m, _language_form=partial(_language_form, m.name))
                                       for m in _ENTRIES)

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
    if isinstance(name, Model):
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
