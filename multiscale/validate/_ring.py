"""Statistics of many slow variables for validation: mean and
variance per variable, autocorrelation of X_k and cross-correlation of neighbours over lags,
the spatial covariance of a ring, each with a bootstrap band over paths; and the exact values
for a linear Gaussian model (for tests and noise-free references)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import scipy.linalg


@dataclass
class RingStatistics:
    """Statistics of trajectories ``(paths, times, K)`` sampled every ``h``; every ``*_se`` is
    the bootstrap standard error over paths (``n_boot`` resamples).

    ``mean``, ``var``: per variable ``(K,)``; ``pooled_mean``, ``pooled_var``: over all
    variables (a ring's sites are exchangeable); ``acf``: the pooled autocorrelation of
    ``X_k`` at ``lags`` (time units); ``ccf``: the pooled correlation of ``X_k(t)`` with
    ``X_{k+1}(t + lag)``; ``spatial``: the pooled covariance of ``X_k`` and ``X_{k+d}``,
    ``d = 0 .. K // 2``.
    """

    lags: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    pooled_mean: float
    pooled_var: float
    acf: np.ndarray
    ccf: np.ndarray
    spatial: np.ndarray
    se: dict = field(default_factory=dict)


def _path_sums(x: np.ndarray, steps: np.ndarray) -> dict:
    """Per-path averages from which every statistic follows (so a bootstrap over paths only
    re-weights these, ``(P, ...)`` arrays, instead of re-reading the trajectories)."""
    P, T, K = x.shape
    nb = np.roll(x, -1, axis=2)  # X_{k+1}
    out = {"m1": x.mean(1), "m2": (x * x).mean(1),
           "lo": np.stack([x[:, :T - s].mean((1, 2)) for s in steps], 1),
           "hi": np.stack([x[:, s:].mean((1, 2)) for s in steps], 1),
           "a": np.stack([(x[:, :T - s] * x[:, s:]).mean((1, 2)) for s in steps], 1),
           "c": np.stack([(x[:, :T - s] * nb[:, s:]).mean((1, 2)) for s in steps], 1),
           "sp": np.stack([(x * np.roll(x, -d, axis=2)).mean((1, 2)) for d in range(K // 2 + 1)], 1)}
    return out


def _combine(sums: dict, w: np.ndarray) -> dict:
    """Statistics of the paths weighted by ``w`` (P,), sum 1 (equal-length paths: exact)."""
    g = {k: np.tensordot(w, v, axes=(0, 0)) for k, v in sums.items()}
    mu = g["m1"]
    pooled_mu = float(mu.mean())  # pooled centring: the sites are exchangeable
    v = float(g["m2"].mean() - pooled_mu**2)
    cent = lambda a: (a - pooled_mu * (g["lo"] + g["hi"]) + pooled_mu**2) / v  # noqa: E731
    return {"mean": mu, "var": g["m2"] - mu**2, "pooled_mean": pooled_mu, "pooled_var": v, "acf": cent(g["a"]),
            "ccf": cent(g["c"]), "spatial": g["sp"] - pooled_mu**2}


def _check_h_boot(h: float, n_boot: int) -> None:
    """The sampling interval and the bootstrap size of the statistics (errors name the value)."""
    if not (isinstance(h, (int, float)) and math.isfinite(h) and h > 0):
        raise ValueError(f"h={h!r} must be positive and finite")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 2:
        raise ValueError(f"n_boot={n_boot!r} must be an integer >= 2 (bootstrap standard errors)")


def ring_statistics(traj: np.ndarray, h: float, lags: np.ndarray, *, n_boot: int = 200,
                    seed: int = 0) -> RingStatistics:
    """:class:`RingStatistics` of trajectories sampled every ``h``.

    Parameters
    ----------
    traj : ndarray, shape (paths, times, K)
        Independent paths of the ``K`` slow variables (a ring: site ``k + 1`` follows ``k``).
    h : float
        Sampling interval (model time units).
    lags : ndarray, shape (L,)
        Lags of the ACF and the neighbour CCF (multiples of ``h``, shorter than the paths).
    n_boot : int
        Bootstrap resamples of whole paths (the standard errors in ``se``).
    seed : int
    """
    x = np.asarray(traj, float)
    if x.ndim != 3 or not np.all(np.isfinite(x)):
        raise ValueError(f"traj must be a finite (paths, times, K) array; got shape {np.shape(traj)}")
    _check_h_boot(h, n_boot)
    lags = np.asarray(lags, float)
    steps = np.rint(lags / h).astype(int)
    if np.any(np.abs(steps * h - lags) > 1e-9 * np.maximum(lags, h)) or np.any(steps < 0) \
            or np.any(steps >= x.shape[1]):
        raise ValueError(f"lags {lags.tolist()} must be multiples of h={h!r} shorter than the paths")
    P = x.shape[0]
    sums = _path_sums(x, steps)
    est = _combine(sums, np.full(P, 1.0 / P))
    rng = np.random.default_rng(seed)
    boots = [_combine(sums, rng.multinomial(P, np.full(P, 1.0 / P)) / P) for _ in range(n_boot)] if P > 1 else []
    se = {k: (np.std([b[k] for b in boots], axis=0, ddof=1) if boots else np.full(np.shape(est[k]), np.nan))
          for k in est}
    return RingStatistics(lags=lags, se=se, **est)


def linear_gaussian_statistics(M: np.ndarray, Sigma: np.ndarray, lags: np.ndarray, *,
                               forcing: np.ndarray | None = None, observed: np.ndarray | None = None) -> dict:
    """Exact stationary statistics of the linear SDE ``dZ = (f - M Z) dt + S dW``, ``S S^T = Sigma``.

    The covariance ``C`` solves ``M C + C M^T = Sigma``, ``Cov(Z(t), Z(t+tau)) = C expm(-M tau)^T``
    and the mean is ``M^{-1} f``; the statistics are those of the components ``observed`` (a ring
    of ``K`` slow variables; all of ``Z`` by default), pooled like :func:`ring_statistics` (exact
    for a circulant ``M``). A full system with linear fast variables is covered by passing its
    whole ``M`` and the slow indices as ``observed``.

    Parameters
    ----------
    M, Sigma : ndarray, shape (n, n)
        Stable drift matrix (1/time) and noise covariance (state^2/time).
    lags : ndarray, shape (L,)
        Time lags (model time units).
    forcing : ndarray, shape (n,), optional
        Constant drift ``f`` (default 0).
    observed : ndarray of int, shape (K,), optional
        Indices of the ring's variables in ``Z``, in ring order.

    Returns
    -------
    dict
        ``mean`` (K,), ``var`` (K,), ``pooled_mean``, ``pooled_var``, ``acf`` (L,), ``ccf`` (L,),
        ``spatial`` (K//2 + 1,), keyed like :class:`RingStatistics`.
    """
    M = np.asarray(M, float)
    n = M.shape[0]
    idx = np.arange(n) if observed is None else np.asarray(observed, int)
    K = idx.size
    C = scipy.linalg.solve_continuous_lyapunov(M, np.asarray(Sigma, float))
    mu = np.zeros(n) if forcing is None else np.linalg.solve(M, np.asarray(forcing, float))
    Co = C[np.ix_(idx, idx)]
    v = float(np.trace(Co) / K)
    acf, ccf = [], []
    for tau in np.asarray(lags, float):
        G = (C @ scipy.linalg.expm(-M * tau).T)[np.ix_(idx, idx)]  # G[i, j] = Cov(X_i(t), X_j(t + tau))
        acf.append(np.trace(G) / K / v)
        ccf.append(np.mean([G[k, (k + 1) % K] for k in range(K)]) / v)
    spatial = np.array([np.mean([Co[k, (k + d) % K] for k in range(K)]) for d in range(K // 2 + 1)])
    return {"mean": mu[idx].copy(), "var": np.diag(Co).copy(), "pooled_mean": float(mu[idx].mean()), "pooled_var": v,
            "acf": np.array(acf), "ccf": np.array(ccf), "spatial": spatial}


KINDS = ("tv", "hellinger", "kl", "w1")


def batched_histograms(traj: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Histograms with the paths as independent batches: pooled over the sites ``(P, bins)``, and
    per variable ``(K, P, bins)``. Values outside ``edges`` are clipped into the end bins."""
    x = np.clip(np.asarray(traj, float), edges[0], edges[-1])
    P, _, K = x.shape
    per = np.stack([np.stack([np.histogram(x[p, :, k], edges)[0] for p in range(P)]) for k in range(K)])
    return per.sum(0).astype(float), per.astype(float)


@dataclass
class RingComparison:
    """One candidate (a surrogate or a baseline) against the reference (the coupled system or an
    exact limit).

    ``stats`` are the candidate's own :class:`RingStatistics`. ``diff`` holds the differences
    (``mean_rel``, ``std_rel``: relative to the reference; ``mean``: absolute; ``acf``, ``ccf``:
    per lag; ``acf_max``: the largest ``|acf diff|`` up to the check lag; ``ccf0``: neighbour
    correlation at lag 0), ``errors`` their standard errors (the two bootstrap errors in
    quadrature; zero for an exact reference's side). ``density`` maps each of the four
    distances to the pooled :class:`DistanceResult` (reference: the reference's batched
    histogram; noise floor: the 95% quantile of a permutation null over paths), and
    ``per_variable_tv`` / ``per_variable_floor`` give the TV distance of each ``X_k`` with its
    floor. ``checks`` are the verdicts at the tolerances given to :func:`compare_ring`.
    """

    name: str
    stats: RingStatistics
    diff: dict
    errors: dict
    density: dict
    per_variable_tv: np.ndarray
    per_variable_floor: np.ndarray
    checks: dict
    counts: np.ndarray | None = None


CHECK_NAMES = {"mean": "mean of X_k within {tol_mean:.0%}", "std": "std of X_k within {tol_std:.0%}",
               "acf": "ACF of X_k within {tol_acf:g} up to lag {check_lag:g}",
               "ccf0": "neighbour correlation at lag 0 within {tol_ccf0:g}",
               "density": "pooled density consistent with the reference (TV at its noise floor)"}


def compare_ring(reference: np.ndarray, candidates: Mapping[str, np.ndarray], h: float, *, max_lag: float = 2.0,
                 check_lag: float | None = None, n_lags: int = 21, tol_mean: float = 0.02, tol_std: float = 0.02,
                 tol_acf: float = 0.05, tol_ccf0: float = 0.03, bins: int = 40, n_boot: int = 200,
                 exact: Mapping[str, Any] | None = None, seed: int = 0
                 ) -> tuple[RingStatistics, list[RingComparison], np.ndarray, np.ndarray]:
    """Compare each candidate's trajectories with the reference's.

    Parameters
    ----------
    reference : ndarray, shape (P, T, K)
        The coupled system's slow variables, sampled every ``h`` (model time units).
    candidates : mapping name -> ndarray (P', T', K)
        Surrogates and baselines, sampled every ``h`` too.
    max_lag, check_lag : float
        The ACF and CCF are measured at ``n_lags`` lags in ``[0, max_lag]``; the ACF check uses
        the lags up to ``check_lag`` (default ``max_lag``).
    tol_mean, tol_std, tol_acf, tol_ccf0 : float
        The issue's tolerances: 2% on the mean and the standard deviation of ``X_k`` (the mean's
        relative to ``|E X_k|``), 0.05 on the ACF, 0.03 on the neighbour correlation at lag 0.
        A statistic passes when its difference is within the tolerance plus twice its error;
        the pooled density passes when its TV distance is at most its noise floor.
    bins : int
        Histogram bins on the reference's central 99.9%.
    exact : mapping, optional
        Exact statistics (:func:`linear_gaussian_statistics` at the same lags): then they are
        the reference of the moments and correlations (errors from the candidate only); the
        density is still compared with ``reference``'s histogram.

    Returns
    -------
    ref : RingStatistics
        The reference's statistics.
    rows : list of RingComparison
    edges : ndarray (bins + 1,)
    ref_counts : ndarray (P, bins)
        The reference's batched pooled histogram.
    """
    from ._distances import density_distance

    check_lag = max_lag if check_lag is None else check_lag
    n_steps = int(round(max_lag / h))
    lags = h * np.unique(np.linspace(0, n_steps, n_lags).round().astype(int))
    ref = ring_statistics(reference, h, lags, n_boot=n_boot, seed=seed)
    rv = {k: (np.asarray(exact[k]) if exact is not None else getattr(ref, k)) for k in
          ("pooled_mean", "pooled_var", "acf", "ccf")}
    for k in ("acf", "ccf"):
        if np.shape(rv[k]) != lags.shape:
            raise ValueError(f"exact[{k!r}] has shape {np.shape(rv[k])}; the lags {lags.tolist()} need {lags.shape}")
    rse = {k: (np.zeros_like(np.asarray(rv[k], float)) if exact is not None else np.asarray(ref.se[k]))
           for k in rv}
    lo, hi = np.quantile(reference, [0.0005, 0.9995])
    edges = np.linspace(lo, hi, bins + 1)
    ref_pooled, ref_per = batched_histograms(reference, edges)
    inside = lags <= check_lag + 1e-12
    tol = {"mean": tol_mean, "std": tol_std, "acf": tol_acf, "ccf0": tol_ccf0}
    out = []
    for name, traj in candidates.items():
        st = ring_statistics(traj, h, lags, n_boot=n_boot, seed=seed)
        mu_r, sd_r = float(rv["pooled_mean"]), math.sqrt(float(rv["pooled_var"]))
        sd = math.sqrt(st.pooled_var)
        dacf, dccf = st.acf - rv["acf"], st.ccf - rv["ccf"]
        e_acf, e_ccf = np.hypot(rse["acf"], st.se["acf"]), np.hypot(rse["ccf"], st.se["ccf"])
        e_mean = float(np.hypot(rse["pooled_mean"], st.se["pooled_mean"]))
        e_std = float(np.hypot(rse["pooled_var"] / (2 * sd_r), st.se["pooled_var"] / (2 * sd)) / sd_r)
        diff = {"mean": st.pooled_mean - mu_r, "mean_rel": st.pooled_mean / mu_r - 1 if mu_r != 0 else math.nan,
                "std_rel": sd / sd_r - 1, "acf": dacf, "ccf": dccf,
                "acf_max": float(np.max(np.abs(dacf[inside]))), "ccf0": float(dccf[0])}
        errors = {"mean": e_mean, "mean_rel": e_mean / abs(mu_r) if mu_r != 0 else math.nan, "std_rel": e_std,
                  "acf": e_acf, "ccf": e_ccf, "acf_max": float(e_acf[inside][np.argmax(np.abs(dacf[inside]))]),
                  "ccf0": float(e_ccf[0])}
        checks = {"mean": bool(abs(diff["mean"]) <= tol["mean"] * abs(mu_r) + 2 * e_mean),
                  "std": bool(abs(diff["std_rel"]) <= tol["std"] + 2 * e_std),
                  "acf": bool(np.all(np.abs(dacf[inside]) <= tol["acf"] + 2 * e_acf[inside])),
                  "ccf0": bool(abs(diff["ccf0"]) <= tol["ccf0"] + 2 * e_ccf[0])}
        c_pooled, c_per = batched_histograms(traj, edges)
        dens = {k: density_distance(c_pooled, counts_ref=ref_pooled, edges=edges, kind=k, seed=seed) for k in KINDS}
        per = [density_distance(c_per[k], counts_ref=ref_per[k], edges=edges, kind="tv", n_boot=n_boot, seed=seed)
               for k in range(c_per.shape[0])]
        checks["density"] = bool(dens["tv"].consistent_with_zero)
        out.append(RingComparison(name, st, diff, errors, dens, np.array([d.estimate for d in per]),
                                  np.array([d.noise_floor for d in per]), checks, c_pooled))
    return ref, out, edges, ref_pooled


def reference_split_distance(ref_counts: np.ndarray, edges: np.ndarray, kind: str = "tv", seed: int = 0) -> float:
    """The distance between two halves of the reference (paths split in two): what two samples of
    the same law differ by at this sample size, shown beside the permutation noise floor."""
    from ._distances import density_distance

    half = ref_counts.shape[0] // 2
    if half < 2 or ref_counts.shape[0] - half < 2:
        return math.nan
    return float(density_distance(ref_counts[:half], counts_ref=ref_counts[half:], edges=edges, kind=kind,
                                  seed=seed).estimate)


@dataclass
class TransitionStatistics:
    """Transitions of a reaction coordinate ``q`` between ``A = {q <= a}`` and ``B = {q >= b}``
    counted along trajectories (each time point labelled by the last set visited).

    ``mfpt_ab = T_A / N_AB``: the time spent coming from ``A`` divided by the number of ``A -> B``
    transitions, which is the mean first passage time from the entrance into ``A`` (at
    ``q = a`` for continuous paths) to ``q >= b``; ``rate_ab = 1 / mfpt_ab``; likewise ``b -> a``.
    Only the part of each path after its first transition counts (each stretch then starts at an
    entrance), and a stretch cut by the path's end adds time without a transition (the
    censored-data estimate, exact for exponential passage times): paths much longer than the
    MFPTs are needed.
    Standard errors from a bootstrap over paths (model time units; ``nan`` without transitions).
    """

    a: float
    b: float
    n_ab: int
    n_ba: int
    mfpt_ab: float
    mfpt_ba: float
    mfpt_ab_se: float
    mfpt_ba_se: float

    @property
    def rate_ab(self) -> float:
        """Rate of A -> B transitions, 1 / mfpt_ab (per model time unit)."""
        return 1.0 / self.mfpt_ab

    @property
    def rate_ba(self) -> float:
        """Rate of B -> A transitions, 1 / mfpt_ba (per model time unit)."""
        return 1.0 / self.mfpt_ba


def transition_statistics(q: np.ndarray, h: float, a: float, b: float, *, n_boot: int = 200,
                          seed: int = 0) -> TransitionStatistics:
    """MFPTs and rates of ``q (paths, times)`` (sampled every ``h``) between ``q <= a`` and
    ``q >= b`` (``a < b``); see :class:`TransitionStatistics`. Sampling every ``h`` can miss
    short excursions across a level, which biases the MFPT up by O(sqrt(h)) of the time scale
    of the last approach; keep ``h`` well below the MFPT."""
    q = np.asarray(q, float)
    if q.ndim != 2 or not a < b:
        raise ValueError(f"q must be (paths, times) and a < b; got shape {q.shape}, a={a!r}, b={b!r}")
    if not np.all(np.isfinite(q)):
        raise ValueError(f"q must be finite; q{tuple(int(i) for i in np.argwhere(~np.isfinite(q))[0])} is not")
    _check_h_boot(h, n_boot)
    code = np.where(q <= a, 0, np.where(q >= b, 1, -1))
    # label = the last set visited (forward fill), -1 before either is reached
    t_idx = np.where(code >= 0, np.arange(q.shape[1])[None, :], 0)
    np.maximum.accumulate(t_idx, axis=1, out=t_idx)
    label = np.take_along_axis(code, t_idx, axis=1)
    label[:, 0] = code[:, 0]
    label = np.where((t_idx == 0) & (code[:, :1] < 0), -1, label)
    # Count only after a path's first transition: then every labelled stretch starts at an
    # entrance into its set, as the MFPT from that entrance needs (a start deep inside a well
    # would lengthen the first passage). A stretch cut by the end of the path adds its time but
    # no transition: the censored-data (exponential) estimate of the rate.
    switched = np.concatenate([np.zeros((q.shape[0], 1), bool), (label[:, 1:] != label[:, :-1])
                               & (label[:, :-1] >= 0)], axis=1)
    label = np.where(np.logical_or.accumulate(switched, axis=1), label, -1)
    t_a = (label[:, :-1] == 0).sum(1) * h
    t_b = (label[:, :-1] == 1).sum(1) * h
    n_ab = ((label[:, :-1] == 0) & (label[:, 1:] == 1)).sum(1)
    n_ba = ((label[:, :-1] == 1) & (label[:, 1:] == 0)).sum(1)

    def ratio(t: np.ndarray, n: np.ndarray, w: np.ndarray) -> float:
        nn = float(w @ n)
        return float(w @ t) / nn if nn > 0 else math.nan

    P = q.shape[0]
    one = np.ones(P)
    rng = np.random.default_rng(seed)
    W = rng.multinomial(P, np.full(P, 1.0 / P), size=n_boot).astype(float) if P > 1 else np.zeros((0, P))

    def se(t: np.ndarray, n: np.ndarray) -> float:
        v = np.array([ratio(t, n, w) for w in W])
        v = v[np.isfinite(v)]
        return float(np.std(v, ddof=1)) if v.size > 1 else math.nan

    return TransitionStatistics(float(a), float(b), int(n_ab.sum()), int(n_ba.sum()), ratio(t_a, n_ab, one),
                                ratio(t_b, n_ba, one), se(t_a, n_ab), se(t_b, n_ba))


def reaction_coordinate_mfpt(system: Any, *, weights: Any, x0: Any, target: float, dt: float, n_paths: int,
                             max_time: float, params: Mapping[str, float] | None = None, eps: float | None = None,
                             y0: Any = None, seed: int = 0, threads: int | None = None) -> Any:
    """MFPT of ``q = w . X`` (``X`` the ``m`` slow variables) from the state ``x0`` to the first
    time ``q`` reaches ``target``, by :func:`mean_first_passage_time` in the compiled kernels
    (Brownian-bridge crossing test): a catalogue model, a :class:`multiscale.Model` or a 1-D
    surrogate. The weights are padded with zeros for the fast states.

    Parameters
    ----------
    weights : array, shape (m,)
        The reaction coordinate's weights on the slow variables.
    x0 : array, shape (m,)
        Start (one state for all paths); ``y0`` the fast start (model default if None).

    Returns
    -------
    MFPTResult
        Its ``mean``, ``stderr``, ``ci`` and ``rate``.
    """
    from ..models import Model, ModelInfo, get_model
    from ._passage import mean_first_passage_time

    w = np.asarray(weights, float)
    if isinstance(system, (str, ModelInfo, Model)):
        info = get_model(system)
        m, n = info.dims(info.resolve_params(params))
        if w.shape != (m,):
            raise ValueError(f"weights have shape {w.shape}; the model has {m} slow variables")
        w = np.concatenate([w, np.zeros(n)])
    return mean_first_passage_time(system, x0=x0, y0=y0, target=target, dt=dt, n_paths=n_paths, max_time=max_time,
                                   params=params, eps=eps, coordinate=w, seed=seed, threads=threads)
