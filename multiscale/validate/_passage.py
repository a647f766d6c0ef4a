"""First passages: hitting times, hitting probabilities and mean first passage times (MFPT).

One propagator serves everything here and adaptive multilevel splitting: a *segment* runs a
path from a given state until its reaction coordinate ``xi`` leaves ``(lo, hi)``, exceeds a
stopping level, or its step budget ends. It is the compiled kernel
(``estimators/first_passage.h``) for catalogue models and for a learned
:class:`~multiscale.surrogate.EffectiveSDE` alike (the surrogate as a kernel model), with the noise
keyed by seed, segment id and step and the Brownian-bridge crossing test, so coarse steps do not
miss crossings.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from .. import _core
from .._checks import integer, positive_finite
from .._checks import seed as check_seed
from .._device import parse_device
from .._errors import SimulationError
from ..models import Model, ModelInfo, get_model
from ..simulate._simulate import _initial

from .._status import OUTCOME_NAMES, Outcome  # the registries: status.h and rng/streams.h

LO, HI, LEVEL, MAX_STEPS, NONFINITE = map(int, Outcome)
_Z95 = 1.959963984540054


def _coordinate_weights(coordinate: Any, names: list[str]) -> np.ndarray:
    """Weights w of the linear reaction coordinate xi = w . state.

    ``None``: the first slow variable; a state name; a mapping ``{name: weight}``; or an array
    of one weight per state component (slow first, then fast).
    """
    w = np.zeros(len(names))
    if coordinate is None:
        w[0] = 1.0
    elif isinstance(coordinate, str):
        if coordinate not in names:
            raise ValueError(f"coordinate={coordinate!r} is not a state variable; choose from {names}")
        w[names.index(coordinate)] = 1.0
    elif isinstance(coordinate, Mapping):
        for k, v in coordinate.items():
            if k not in names:
                raise ValueError(f"coordinate has {k!r}, not a state variable; choose from {names}")
            w[names.index(k)] = float(v)
    else:
        arr = np.asarray(coordinate, dtype=float)
        if arr.shape != (len(names),):
            raise ValueError(f"coordinate weights have shape {arr.shape}; expected ({len(names)},) for {names}")
        w[:] = arr
    if not np.all(np.isfinite(w)) or not np.any(w != 0):
        raise ValueError(f"coordinate weights {w.tolist()} must be finite and not all zero")
    return w


class _CompiledEngine:
    """Segments of a catalogue model in the compiled kernel."""

    def __init__(self, info: ModelInfo, params: Mapping[str, float] | None, eps: float | None, dt: float,
                 coordinate: Any, threads: int | None, exact_ou: bool = True, device: str = "cpu") -> None:
        self.info = info
        self.params = info.resolve_params(params)
        if info.uses_eps:
            self.eps = positive_finite("eps", info.default_eps if eps is None else eps)
        else:
            if eps is not None:
                raise ValueError(f"eps={eps!r} given, but model {info.name!r} does not use eps")
            self.eps = 1.0
        self.dt = positive_finite("dt", dt)
        self.m, self.n = info.dims(self.params)
        slow, fast = info.state_names(self.params)
        self.names = slow + fast
        self.w = _coordinate_weights(coordinate, self.names)
        self.threads = 0 if threads is None else integer("threads", threads, 1)
        self.exact_ou = bool(exact_ou and info.exact_ou)
        self._p = np.asarray([self.params[k] for k in info.param_names], float)
        self.device = parse_device(device)
        self.label = info.name

    def initial(self, x0: Any, y0: Any, n: int) -> np.ndarray:
        dx, dy = self.info.default_initial(self.params)
        return np.concatenate([_initial("x0", x0, dx, n, self.m), _initial("y0", y0, dy, n, self.n)], axis=1)

    def xi(self, states: np.ndarray) -> np.ndarray:
        return states @ self.w

    def run(self, states: np.ndarray, ids: np.ndarray, levels: np.ndarray, lo: float, hi: float,
            max_steps: int, seed: int, bridge: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance ``states`` (n, dim) in place; returns (outcome, steps, xi_max), each (n,)."""
        r = (self.info.core or _core).passage(
            model_id=self.info.id, params=self._p, eps=self.eps, dt=self.dt, exact_ou=self.exact_ou,
            seed=int(seed), state=states, path_ids=np.ascontiguousarray(ids, np.uint32),
            levels=np.ascontiguousarray(levels, float), w=self.w, lo=float(lo), hi=float(hi),
            max_steps=int(max_steps), bridge=bool(bridge), threads=self.threads, device=self.device)
        return r["outcome"], r["steps"], r["xi_max"]


class _SurrogateEngine:
    """Segments of a learned effective SDE in the compiled first-passage kernel (the surrogate as
    a kernel model: networks evaluated for blocks of lanes, tables in 1-D)."""

    def __init__(self, sde: Any, dt: float, coordinate: Any, member: int | None, threads: int | None,
                 device: str = "cpu") -> None:
        self.sde = sde
        self.dt = positive_finite("dt", dt)
        self.names = list(sde.names)
        self.m, self.n = sde.dim, 0
        self.w = _coordinate_weights(coordinate, self.names)
        if member is not None and not (isinstance(member, (int, np.integer)) and 0 <= member < sde.members):
            raise ValueError(f"member={member!r} must be None or an integer in [0, {sde.members})")
        self.member = None if member is None else int(member)
        self.threads = 0 if threads is None else integer("threads", threads, 1)
        self.device = parse_device(device)
        self.label = "surrogate" if member is None else f"surrogate member {member}"
        self.tables = True  # 1-D tables in the kernel (False: the networks every step)

    def initial(self, x0: Any, y0: Any, n: int) -> np.ndarray:
        if y0 is not None:
            raise ValueError("y0 given, but a surrogate has no fast variables")
        return _initial("x0", x0, self.sde.x_mean.cpu().numpy(), n, self.m)

    def xi(self, states: np.ndarray) -> np.ndarray:
        return states @ self.w

    def run(self, states: np.ndarray, ids: np.ndarray, levels: np.ndarray, lo: float, hi: float,
            max_steps: int, seed: int, bridge: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Advance ``states`` (n, dim) in place; returns (outcome, steps, xi_max), each (n,).

        The rule of the catalogue kernels (Euler-Maruyama with the noise of (seed, id, step) on
        the surrogate's stream, absorption at lo/hi with the Brownian-bridge test, a stop at the
        first step with xi > level), run by the same launcher.
        """
        from ..surrogate._kernel import kernel_of, member_code

        args = kernel_of(self.sde).args(member_code(self.member), self.tables)
        r = _core.passage_surrogate(**args, dt=self.dt, seed=int(seed), state=states,
                                    path_ids=np.ascontiguousarray(ids, np.uint32),
                                    levels=np.ascontiguousarray(levels, float), w=self.w, lo=float(lo),
                                    hi=float(hi), max_steps=int(max_steps), bridge=bool(bridge),
                                    threads=self.threads, device=self.device)
        return r["outcome"], r["steps"], r["xi_max"]


def make_engine(system: Any, *, dt: float, params: Mapping[str, float] | None = None, eps: float | None = None,
                coordinate: Any = None, threads: int | None = None, member: int | None = None,
                device: str = "cpu"):
    """The segment propagator of a catalogue model (name or ModelInfo) or a learned EffectiveSDE."""
    if isinstance(system, (str, ModelInfo, Model)):
        if member is not None:
            raise ValueError("member= applies to surrogates only")
        return _CompiledEngine(get_model(system), params, eps, dt, coordinate, threads, device=device)
    if hasattr(system, "_step_coefficients") and hasattr(system, "members"):
        if params is not None or eps is not None:
            raise ValueError("params= and eps= apply to catalogue models only, not to a surrogate")
        return _SurrogateEngine(system, dt, coordinate, member, threads, device)
    raise ValueError(f"system={system!r} must be a catalogue model name, a ModelInfo or an EffectiveSDE")


def _levels(lo: Any, hi: Any) -> tuple[float, float]:
    lo_v, hi_v = float(lo), float(hi)
    if math.isnan(lo_v) or math.isnan(hi_v) or not lo_v < hi_v:
        raise ValueError(f"lo={lo!r} and hi={hi!r} must satisfy lo < hi")
    if not (math.isfinite(lo_v) or math.isfinite(hi_v)):
        raise ValueError("at least one of lo and hi must be finite")
    return lo_v, hi_v


@dataclass(frozen=True)
class PassageResult:
    """Per-path first passages out of ``(lo, hi)``.

    Attributes
    ----------
    time : ndarray (n_paths,)
        Exit time (model time units; end of the step in which the exit happened); NaN for
        paths that did not exit.
    outcome : ndarray (n_paths,) int8
        0 ``LO``, 1 ``HI``, 3 ``MAX_STEPS`` (no exit within ``max_time``), 4 ``NONFINITE``.
    final_state : ndarray (n_paths, dim)
    names : list of str
        State component names of ``final_state``.
    """

    time: np.ndarray
    outcome: np.ndarray
    final_state: np.ndarray
    names: list
    dt: float
    lo: float
    hi: float

    @property
    def p_hi(self) -> tuple[float, float]:
        """Probability of leaving through ``hi`` first, and its standard error."""
        done = self.outcome <= HI
        n = int(done.sum())
        if n == 0:
            return math.nan, math.nan
        p = float((self.outcome == HI).sum()) / n
        return p, math.sqrt(max(p * (1 - p), 0.0) / n)


def first_passage(system: Any, *, x0: Any, dt: float, n_paths: int, max_time: float, lo: float = -math.inf,
                  hi: float = math.inf, y0: Any = None, params: Mapping[str, float] | None = None,
                  eps: float | None = None, coordinate: Any = None, seed: int = 0, path_offset: int = 0,
                  bridge: bool = True, member: int | None = None, threads: int | None = None,
                  device: str = "cpu") -> PassageResult:
    """Run ``n_paths`` paths until the reaction coordinate leaves ``(lo, hi)``.

    Parameters
    ----------
    system : str, ModelInfo or EffectiveSDE
        A catalogue model (full system, compiled kernels) or a learned surrogate.
    x0, y0 : float or array
        Initial slow / fast state (as in :func:`multiscale.simulate`).
    dt : float
        Time step (model time units).
    n_paths : int
    max_time : float
        Time budget per path; paths still inside are reported as ``MAX_STEPS``.
    lo, hi : float
        Absorbing levels of the coordinate (``-inf``/``inf``: none).
    coordinate : None, str, mapping or array
        The reaction coordinate: the first slow variable by default, a state name, a mapping
        ``{name: weight}`` or weights per state component (linear in the state).
    seed, path_offset : int
        Path ``i`` draws the noise of ``(seed, path_offset + i, step)``: results do not depend on
        threads, and chunks with offsets reproduce one big run.
    bridge : bool
        Brownian-bridge crossing test between steps (recommended; without it a coarse step
        misses excursions and exit probabilities are biased by O(sqrt(dt))).
    member : int, optional
        Surrogates only: one ensemble member instead of the ensemble mean.
    device : {"cpu", "cuda", "cuda:N"}
        Catalogue models only; the same noise and decisions on either.
    """
    eng = make_engine(system, dt=dt, params=params, eps=eps, coordinate=coordinate, threads=threads, member=member,
                      device=device)
    return _first_passage(eng, x0, y0, n_paths, max_time, lo, hi, seed, path_offset, bridge)


def _first_passage(eng, x0: Any, y0: Any, n_paths: int, max_time: float, lo: float, hi: float, seed: int,
                   path_offset: int, bridge: bool) -> PassageResult:
    lo_v, hi_v = _levels(lo, hi)
    n_paths = integer("n_paths", n_paths, 1)
    seed = check_seed("seed", seed)
    path_offset = integer("path_offset", path_offset, 0)
    if path_offset + n_paths > 2**32:
        raise ValueError(f"path_offset + n_paths = {path_offset + n_paths} exceeds 2**32 paths")
    max_steps = int(math.ceil(positive_finite("max_time", max_time) / eng.dt - 1e-9))
    states = np.ascontiguousarray(eng.initial(x0, y0, n_paths), float)
    ids = np.arange(path_offset, path_offset + n_paths, dtype=np.uint64).astype(np.uint32)
    outcome, steps, _ = eng.run(states, ids, np.full(n_paths, math.inf), lo_v, hi_v, max_steps, seed, bridge)
    time = np.where(outcome <= HI, steps * eng.dt, np.nan)
    return PassageResult(time=time, outcome=outcome, final_state=states, names=eng.names, dt=eng.dt, lo=lo_v, hi=hi_v)


@dataclass(frozen=True)
class MFPTResult:
    """Mean first passage time from simulation, with a 95% confidence interval.

    ``rate = 1/mean`` (per model time unit) with the interval mapped through 1/T.
    """

    mean: float
    stderr: float
    ci: tuple[float, float]
    n_paths: int
    source: str
    x0: float
    target: float
    dt: float

    @property
    def rate(self) -> float:
        return 1.0 / self.mean

    @property
    def rate_ci(self) -> tuple[float, float]:
        return 1.0 / self.ci[1], (1.0 / self.ci[0] if self.ci[0] > 0 else math.inf)


def mean_first_passage_time(system: Any, *, x0: float, target: float, dt: float, n_paths: int,
                            max_time: float, y0: Any = None, params: Mapping[str, float] | None = None,
                            eps: float | None = None, coordinate: Any = None, seed: int = 0,
                            bridge: bool = True, member: int | None = None,
                            threads: int | None = None, device: str = "cpu") -> MFPTResult:
    """MFPT of the coordinate from ``x0`` to the first hitting of ``target`` (either side).

    Every path must arrive within ``max_time``: censored paths would bias the mean low, so
    they raise :class:`~multiscale.SimulationError` naming how many there were.
    """
    tf = float(target)
    if not math.isfinite(tf):
        raise ValueError(f"target={target!r} must be finite")
    eng = make_engine(system, dt=dt, params=params, eps=eps, coordinate=coordinate, threads=threads, member=member,
                      device=device)
    xi0 = eng.xi(eng.initial(x0, y0, 1))[0]
    if xi0 == tf:
        raise ValueError(f"x0={x0!r} already lies on target={target!r}")
    lo, hi = (-math.inf, tf) if tf > xi0 else (tf, math.inf)
    res = _first_passage(eng, x0, y0, n_paths, max_time, lo, hi, seed, 0, bridge)
    bad = int(np.count_nonzero(res.outcome > HI))
    if bad:
        kinds = {OUTCOME_NAMES[k]: int(np.count_nonzero(res.outcome == k)) for k in (MAX_STEPS, NONFINITE)}
        raise SimulationError(f"{bad} of {n_paths} paths did not reach target={target} from x0={x0} "
                              f"({kinds}); raise max_time={max_time} or check the model", dataset=None)
    t = res.time
    mean = float(t.mean())
    se = float(t.std(ddof=1) / math.sqrt(t.size)) if t.size > 1 else math.inf
    return MFPTResult(mean=mean, stderr=se, ci=(mean - _Z95 * se, mean + _Z95 * se), n_paths=int(t.size),
                      source=eng.label, x0=float(xi0), target=tf, dt=float(dt))
