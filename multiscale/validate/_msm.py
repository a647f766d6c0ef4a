"""Implied timescales of a 1-D slow variable from a reversible Markov state model (MSM).

The slow variable is discretised into bins; transitions are counted at a lag over all paths,
the count matrix is symmetrised (the reversible estimate ``(C + C^T)/2``, adequate for
equilibrium data), restricted to its largest connected set, and the eigenvalues ``lambda_i``
of the transition matrix give implied timescales ``t_i = -lag_time / log(lambda_i)``.
Discretisation makes these underestimate the true timescales (variational principle), by a
relative amount that shrinks as the lag grows.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from .._checks import increasing_array, positive_finite, whole_number


@dataclass(frozen=True, eq=False)
class MSMResult:
    """Implied timescales of a reversible MSM.

    Attributes
    ----------
    lag_time : float
        ``lag * dt`` (time units of the trajectory).
    timescales : ndarray, shape (k,)
        Implied timescales ``t_1 >= t_2 >= ...`` (time units).
    stderr : ndarray, shape (k,)
        Bootstrap standard errors over paths.
    ci : ndarray, shape (k, 2)
        95% basic-bootstrap intervals, clipped at 0.
    n_states : int
        Size of the largest connected set.
    active_set : ndarray of int, shape (n_states,)
        Bin indices of that set.
    """

    lag_time: float
    timescales: np.ndarray
    stderr: np.ndarray
    ci: np.ndarray
    n_states: int
    active_set: np.ndarray


def _reversible_eigenvalues(counts: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ``lambda_1..lambda_k`` (after the stationary 1) on the largest connected set.

    The reversible transition matrix ``T = D^{-1} C_s`` with ``D = diag(C_s 1)`` is similar to
    the symmetric ``D^{-1/2} C_s D^{-1/2}``, so a symmetric eigen-solve suffices.
    """
    cs = 0.5 * (counts + counts.T)
    _, labels = connected_components(csr_matrix(cs > 0), directed=False)
    active = np.flatnonzero(labels == np.argmax(np.bincount(labels, weights=cs.sum(axis=1))))
    cs = cs[np.ix_(active, active)]
    d = cs.sum(axis=1)
    if active.size < k + 1:
        return np.zeros(0), active
    inv = 1.0 / np.sqrt(d)
    lam = np.linalg.eigvalsh(cs * inv[:, None] * inv[None, :])
    return lam[::-1][1:k + 1], active


def msm_implied_timescales(traj: np.ndarray, *, edges: np.ndarray, lag: int, dt: float, k: int = 3,
                           n_boot: int = 200, seed: int = 0) -> MSMResult:
    """Implied timescales of a reversible MSM of a 1-D slow variable.

    Parameters
    ----------
    traj : ndarray, shape (n_paths, n_times)
        Slow variable sampled every ``dt`` (paths should be near equilibrium).
    edges : ndarray, shape (n_bins + 1,)
        Bin edges; values outside go to the end bins.
    lag : int
        Lag in samples (``1 <= lag < n_times``).
    dt : float
        Sampling interval (time units).
    k : int
        Number of timescales.
    n_boot : int
        Bootstrap replicates over paths (>= 20); replicates resample whole paths.
    seed : int
        Seed of the bootstrap (deterministic).

    Returns
    -------
    MSMResult

    Raises
    ------
    ValueError
        Bad shapes or values, or when the point estimate has an eigenvalue ``<= 0`` (that
        timescale is not resolved at this lag: use a shorter lag or a smaller ``k``).  In a
        bootstrap replicate such an eigenvalue gives timescale 0, the limit as
        ``lambda -> 0+``.
    """
    x = np.asarray(traj, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"traj must have shape (n_paths, n_times); got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        i, j = np.argwhere(~np.isfinite(x))[0]
        raise ValueError(f"traj must be finite; got traj[{i}, {j}] = {float(x[i, j])!r}")
    e = increasing_array("edges", edges, 3)
    n_paths, n_times = x.shape
    if int(lag) != lag or not 1 <= lag < n_times:
        raise ValueError(f"lag must be an integer in [1, n_times={n_times}); got lag={lag!r}")
    dt = positive_finite("dt", dt)
    n_bins = e.size - 1
    if int(k) != k or not 1 <= k <= n_bins - 1:
        raise ValueError(f"k must be an integer in [1, n_bins - 1 = {n_bins - 1}]; got k={k!r}")
    n_boot = whole_number("n_boot", n_boot, 20)
    lag, k = int(lag), int(k)
    lag_time = lag * float(dt)

    # Bin index 0..n_bins-1; values outside the edges fall into the end bins.
    s = np.clip(np.searchsorted(e, x, side="right") - 1, 0, n_bins - 1)
    # Per-path count matrices, flattened: shape (n_paths, n_bins^2), so that a bootstrap
    # replicate is one weighted sum over paths.
    pair = s[:, :-lag] * n_bins + s[:, lag:]
    offs = np.arange(n_paths)[:, None] * n_bins * n_bins
    per_path = np.bincount((pair + offs).ravel(), minlength=n_paths * n_bins * n_bins)
    per_path = per_path.reshape(n_paths, n_bins * n_bins).astype(np.float64)

    lam, active = _reversible_eigenvalues(per_path.sum(axis=0).reshape(n_bins, n_bins), k)
    if lam.size < k:
        raise ValueError(f"largest connected set has {active.size} states; need at least k+1={k + 1}")
    if np.any(lam <= 0):
        i = int(np.argmax(lam <= 0))
        raise ValueError(f"eigenvalue lambda_{i + 1} = {float(lam[i])!r} <= 0 at lag={lag}: timescale not "
                         "resolved; use a shorter lag or smaller k")
    ts = -lag_time / np.log(lam)

    rng = np.random.default_rng(seed)
    w = rng.multinomial(n_paths, np.full(n_paths, 1.0 / n_paths), size=n_boot).astype(np.float64)
    boot = np.zeros((n_boot, k))
    for r, c in enumerate(w @ per_path):
        lb, _ = _reversible_eigenvalues(c.reshape(n_bins, n_bins), k)
        lb = np.concatenate([lb, np.zeros(k - lb.size)])  # too few states: unresolved, 0
        with np.errstate(divide="ignore"):
            boot[r] = np.where(lb > 0, -lag_time / np.log(np.where(lb > 0, lb, 0.5)), 0.0)
    lo_q, hi_q = np.quantile(boot, [0.025, 0.975], axis=0)
    ci = np.clip(np.stack([2 * ts - hi_q, 2 * ts - lo_q], axis=1), 0.0, None)
    return MSMResult(lag_time=lag_time, timescales=ts, stderr=boot.std(axis=0, ddof=1), ci=ci,
                     n_states=int(active.size), active_set=active)
