"""Adaptive multilevel splitting (AMS) for probabilities of reaching B before A.

Generalised AMS (Cérou & Guyader 2007; Bréhier, Gazeau, Goudenège, Lelièvre & Rousset,
Ann. Appl. Probab. 26 (2016) 3559): N replicas run from x0 until the reaction coordinate xi
enters A = {xi <= a} or B = {xi >= b}. Each iteration takes the level z as the k-th smallest
path maximum of xi, kills every replica whose maximum is <= z (ties included), and replaces
each by a copy of a uniformly chosen survivor up to the survivor's first step with xi > z,
continued with fresh noise. With K_q replicas killed at iteration q and r the fraction of the
final replicas in B,

    p_hat = prod_q (1 - K_q / N) * r

is an unbiased estimator of P(B before A) for the discrete-time dynamics, for any k >= 1.

No trajectory is stored: a replica is a *segment record* (start state, segment id). Its noise
is a pure function of (seed, segment id, step), so the branching state is recovered by
replaying the survivor's segment up to its first crossing of z. All replicas of all
independent runs advance together in one kernel call per iteration. The standard error comes
from ``n_runs`` independent runs (each with its own id range), so it makes no asymptotic
assumption about the splitting.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .._checks import finite_interval, integer, positive_finite
from .._checks import seed as check_seed
from .._errors import SimulationError
from ._passage import HI, LEVEL, LO, OUTCOME_NAMES, make_engine

_ID_BITS = 20  # segment ids of run r: r << 20 | local counter (independent of the number of runs)


@dataclass(frozen=True)
class AMSOptions:
    """Settings of adaptive multilevel splitting.

    Attributes
    ----------
    n_replicas : int
        Replicas N per run (the relative variance per run is about |ln p| / N).
    kill : int
        Replicas k killed per iteration (at least; ties kill more). Larger k means fewer,
        larger kernel calls at a slightly higher variance; k = 1 is classical AMS.
    n_runs : int
        Independent runs; the estimate is their mean and the standard error their spread.
    dt : float
        Time step of the dynamics (model time units).
    max_time : float
        Time budget of one segment; a segment that neither reaches A nor B by then is an error.
    max_iterations : int
        Safety bound on iterations per run.
    bridge : bool
        Brownian-bridge crossing test at a and b.
    """

    n_replicas: int = 200
    kill: int = 10
    n_runs: int = 20
    dt: float = 1e-3
    max_time: float = 1e3
    max_iterations: int = 100_000
    bridge: bool = True

    def __post_init__(self) -> None:
        integer("n_replicas", self.n_replicas, 2)
        integer("kill", self.kill, 1)
        integer("n_runs", self.n_runs, 2)
        integer("max_iterations", self.max_iterations, 1)
        if self.kill >= self.n_replicas:
            raise ValueError(f"kill={self.kill} must be < n_replicas={self.n_replicas}")
        positive_finite("dt", self.dt)
        positive_finite("max_time", self.max_time)
        if self.n_runs >= 4096:
            raise ValueError(f"n_runs={self.n_runs} must be < 4096")


@dataclass(frozen=True)
class AMSResult:
    """P(B before A) by AMS.

    Attributes
    ----------
    probability, stderr : float
        Mean over runs and its standard error (spread of the runs / sqrt(n_runs)).
    ci : (float, float)
        95% interval, Student t over runs, clipped at 0.
    runs : ndarray (n_runs,)
        Estimate of each independent run.
    iterations : ndarray (n_runs,)
        Splitting iterations per run.
    levels : list of ndarray
        The levels z_q of each run (for convergence plots).
    seconds : float
        Wall time.
    """

    probability: float
    stderr: float
    ci: tuple[float, float]
    runs: np.ndarray
    iterations: np.ndarray
    levels: list = field(repr=False)
    seconds: float
    a: float
    b: float
    options: AMSOptions = field(repr=False)
    source: str = ""

    def running_estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard error of the first 2..n_runs runs (convergence of the estimate)."""
        n = np.arange(1, self.runs.size + 1)
        c = np.cumsum(self.runs) / n
        var = np.array([self.runs[:k].var(ddof=1) if k > 1 else np.nan for k in n])
        return c, np.sqrt(var / n)


def _t95(dof: int) -> float:
    from scipy.stats import t

    return float(t.ppf(0.975, dof))


def ams(system: Any, *, x0: Any, a: float, b: float, options: AMSOptions = AMSOptions(), y0: Any = None,
        params: Mapping[str, float] | None = None, eps: float | None = None, coordinate: Any = None,
        seed: int = 0, member: int | None = None, threads: int | None = None, device: str = "cpu") -> AMSResult:
    """Probability that the reaction coordinate reaches ``b`` before ``a``, by AMS.

    Parameters
    ----------
    system : str, ModelInfo or EffectiveSDE
        Catalogue model (full system; clones propagate in the compiled kernels) or a learned
        surrogate (ensemble mean, or one ``member``).
    x0, y0 : float or array
        Start state (slow, fast); the coordinate of x0 must lie in (a, b).
    a, b : float
        A = {xi <= a}, B = {xi >= b}.
    coordinate : None, str, mapping or array
        The reaction coordinate (default: the first slow variable), linear in the state.
    seed : int
        Results are a function of (seed, options) only: not of threads.
    device : {"cpu", "cuda", "cuda:N"}
        Where full-system clones propagate (catalogue models only).
    """
    if not isinstance(options, AMSOptions):
        raise ValueError(f"options={options!r} must be a multiscale.validate.AMSOptions")
    o = options
    a_v, b_v = finite_interval(a, b, ("a", "b"))
    seed = check_seed("seed", seed)
    eng = make_engine(system, dt=o.dt, params=params, eps=eps, coordinate=coordinate, threads=threads, member=member,
                      device=device)
    R, N, k = o.n_runs, o.n_replicas, o.kill
    start = np.ascontiguousarray(eng.initial(x0, y0, 1)[0], float)
    xi0 = float(eng.xi(start[None])[0])
    if not a_v < xi0 < b_v:
        raise ValueError(f"the start x0={x0!r} has coordinate {xi0}, outside (a, b) = ({a_v}, {b_v})")
    max_steps = int(math.ceil(o.max_time / eng.dt - 1e-9))
    t0 = time.perf_counter()

    dim = start.size
    rec_state = np.broadcast_to(start, (R, N, dim)).copy()  # segment start states
    rec_id = (np.arange(R, dtype=np.int64)[:, None] << _ID_BITS) + np.arange(N)[None, :]
    used = np.full(R, N, np.int64)  # ids consumed per run

    def run(states: np.ndarray, ids: np.ndarray, levels: np.ndarray):
        out, _, xmax = eng.run(states, ids.astype(np.uint32), levels, a_v, b_v, max_steps, seed, o.bridge)
        bad = ~np.isin(out, (LO, HI, LEVEL))
        if bad.any():
            kinds = {OUTCOME_NAMES[c]: int((out == c).sum()) for c in np.unique(out[bad])}
            raise SimulationError(f"AMS: {int(bad.sum())} segments ended without reaching a={a_v} or b={b_v} "
                                  f"({kinds}); raise max_time={o.max_time} or check the model and levels")
        return out, xmax

    st = rec_state.reshape(R * N, dim).copy()
    out, xmax = run(st, rec_id.ravel(), np.full(R * N, np.inf))
    maxes = xmax.reshape(R, N)
    in_b = (out == HI).reshape(R, N)
    log_w = np.zeros(R)
    active = np.ones(R, bool)
    iters = np.zeros(R, np.int64)
    levels: list[list[float]] = [[] for _ in range(R)]
    rngs = [np.random.Generator(np.random.Philox(key=[seed, r])) for r in range(R)]
    while active.any():
        z = np.partition(maxes, k - 1, axis=1)[:, k - 1]
        active &= (z < b_v) & ~in_b.all(axis=1)
        active &= iters < o.max_iterations
        if not active.any():
            break
        killed = (maxes <= z[:, None]) & active[:, None]
        n_killed = killed.sum(axis=1)
        extinct = active & (n_killed == N)
        log_w[extinct] = -np.inf
        active &= ~extinct
        killed &= active[:, None]
        runs = np.nonzero(active)[0]
        if runs.size == 0:
            break
        rr, slot, donor = [], [], []
        for r in runs:
            kk = np.nonzero(killed[r])[0]
            surv = np.nonzero(~killed[r])[0]
            log_w[r] += math.log1p(-kk.size / N)
            levels[r].append(float(z[r]))
            iters[r] += 1
            rr.append(np.full(kk.size, r))
            slot.append(kk)
            donor.append(rngs[r].choice(surv, size=kk.size))
        rr, slot, donor = np.concatenate(rr), np.concatenate(slot), np.concatenate(donor)
        # Replay each donor's segment to its first step with xi > z: the branching state.
        st = rec_state[rr, donor].copy()
        out1, _ = run(st, rec_id[rr, donor], z[rr])
        # New segments from the branching states, with fresh ids.
        new_id = np.empty(rr.size, np.int64)
        for r in runs:
            sel = rr == r
            c = int(sel.sum())
            if used[r] + c > 2**_ID_BITS:
                raise SimulationError(f"AMS run {r} needs more than 2**{_ID_BITS} segments; "
                                      "lower n_replicas or raise kill")
            new_id[sel] = (r << _ID_BITS) + used[r] + np.arange(c)
            used[r] += c
        branched = out1 == LEVEL
        # A donor that entered B (by the bridge test) without a step above z is copied whole.
        copy = ~branched
        rec_state[rr[copy], slot[copy]] = rec_state[rr[copy], donor[copy]]
        rec_id[rr[copy], slot[copy]] = rec_id[rr[copy], donor[copy]]
        maxes[rr[copy], slot[copy]] = maxes[rr[copy], donor[copy]]
        in_b[rr[copy], slot[copy]] = in_b[rr[copy], donor[copy]]
        if branched.any():
            rb, sb = rr[branched], slot[branched]
            rec_state[rb, sb] = st[branched]
            rec_id[rb, sb] = new_id[branched]
            st2 = st[branched].copy()
            out2, xmax2 = run(st2, new_id[branched], np.full(rb.size, np.inf))
            maxes[rb, sb] = xmax2
            in_b[rb, sb] = out2 == HI
    if (iters >= o.max_iterations).any():
        raise SimulationError(f"AMS: a run reached max_iterations={o.max_iterations} before all replicas "
                              f"reached b={b_v}; raise max_iterations or kill")
    p_runs = np.exp(log_w) * in_b.mean(axis=1)
    p = float(p_runs.mean())
    se = float(p_runs.std(ddof=1) / math.sqrt(R))
    h = _t95(R - 1) * se
    return AMSResult(probability=p, stderr=se, ci=(max(p - h, 0.0), p + h), runs=p_runs, iterations=iters,
                     levels=[np.asarray(v) for v in levels], seconds=time.perf_counter() - t0, a=a_v, b=b_v,
                     options=o, source=eng.label)
