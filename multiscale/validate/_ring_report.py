"""Validation of many slow variables (a ring such as Lorenz-96's ``X_k``): the full system, the
learned surrogate and baselines on the same statistics, in one report.

Every candidate (the learned surrogate, each baseline) is run from the full system's own states
after a spin-up, and its trajectories are compared with the full system's (the reference; no
exact limit is known for these systems, and the report says so):

* per-variable and pooled marginal densities with the four distances (TV, Hellinger, KL, W1)
  and their noise floors (a permutation null over paths, which are independent batches);
* mean and variance of ``X_k``, per variable and pooled;
* the pooled autocorrelation of ``X_k`` and the neighbour cross-correlation ``X_k(t)`` vs
  ``X_{k+1}(t + lag)`` up to several time units, with bootstrap bands over paths;
* the spatial covariance ``Cov(X_k, X_{k+d})``;
* where a linear reaction coordinate ``q = w . X`` and two levels are given (metastable
  systems), mean first passage times and rates between ``q <= a`` and ``q >= b``.

Pass/fail checks use the issue's tolerances (mean and std of ``X_k`` within 2%, ACF within 0.05
up to lag 2, neighbour correlation at lag 0 within 0.03), each widened by twice its standard
error, and the pooled density at its noise floor (see :func:`._ring.compare_ring`).
"""
from __future__ import annotations

import inspect
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from .._device import build_info
from .._errors import SimulationError
from ..simulate import Precision
from ._ring import (CHECK_NAMES, KINDS, RingComparison, RingStatistics, compare_ring, reference_split_distance,
                    transition_statistics)

REFERENCE = "full system"


@dataclass(frozen=True)
class RingValidationSettings:
    """Sizes and steps of the validation of many slow variables (model time units).

    Attributes
    ----------
    eps : float or None
        Scale separation of the full system (None: the model's default; ignored by models
        without one).
    dt : float
        Time step of the full system.
    n_paths : int
        Independent paths of every run (the bootstrap and the density batches resample them).
    t_spinup : float
        Full-system time discarded before sampling; the candidates start from the full
        system's slow states at its end (path ``i`` from reference path ``i mod P``).
    t_end : float
        Sampled length of every run after the spin-up.
    t_burn : float
        Start of every candidate run discarded (the step from the full system's attractor to
        the candidate's own).
    sample_every : float
        Sampling interval of all statistics (a multiple of ``dt`` and ``surrogate_dt``).
    surrogate_dt : float
        Time step of the surrogate and the baselines.
    max_lag, check_lag : float
        ACF and neighbour CCF up to ``max_lag`` (every ``sample_every``); the ACF check up to
        ``check_lag``.
    bins : int
        Histogram bins on the reference's central 99.9%.
    n_boot : int
        Bootstrap resamples over paths.
    tol_mean, tol_std, tol_acf, tol_ccf0 : float
        The checks' tolerances (each widened by twice the difference's standard error).
    member : int, "sample" or None
        Which member drives a surrogate path (``"sample"``: path ``p`` follows ``p mod members``).
    precision : multiscale.Precision
        Floating type of the learned surrogates' compiled simulation (``FLOAT32``: the kernel's
        single-precision throughput mode, validated as run).
    seed : int
    threads : int or None
    """

    eps: float | None = None
    dt: float = 2e-4
    n_paths: int = 32
    t_spinup: float = 5.0
    t_end: float = 200.0
    t_burn: float = 2.0
    sample_every: float = 0.05
    surrogate_dt: float = 0.005
    max_lag: float = 5.0
    check_lag: float = 2.0
    bins: int = 40
    n_boot: int = 200
    tol_mean: float = 0.02
    tol_std: float = 0.02
    tol_acf: float = 0.05
    tol_ccf0: float = 0.03
    member: int | str | None = "sample"
    precision: Precision = Precision.FLOAT64
    seed: int = 0
    threads: int | None = None

    @classmethod
    def quick(cls, **kw: Any) -> "RingValidationSettings":
        """Short runs for tests and CI (same code paths, wider error bars): 8 paths of 20 time
        units after a 2-unit spin-up, lags up to 3 (Lorenz-96: a few seconds)."""
        base: dict[str, Any] = dict(n_paths=8, t_spinup=2.0, t_end=20.0, t_burn=1.0, max_lag=3.0, n_boot=100)
        base.update(kw)
        return cls(**base)

    def __post_init__(self) -> None:
        for name in ("dt", "t_end", "sample_every", "surrogate_dt", "max_lag", "check_lag"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r} must be positive and finite")
        for name in ("t_spinup", "t_burn"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v >= 0):
                raise ValueError(f"{name}={v!r} must be >= 0")
        for name, step in (("dt", self.dt), ("surrogate_dt", self.surrogate_dt)):
            r = self.sample_every / step
            if abs(r - round(r)) > 1e-6 * r:
                raise ValueError(f"sample_every={self.sample_every!r} must be a multiple of {name}={step!r}")
        for name, lo in (("n_paths", 4), ("n_boot", 2), ("bins", 4)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"{name}={v!r} must be an integer >= {lo}"
                                 + (" (paths are the bootstrap's batches)" if name == "n_paths" else ""))
        if self.max_lag >= self.t_end:
            raise ValueError(f"max_lag={self.max_lag} must be below t_end={self.t_end}")
        if not isinstance(self.precision, Precision):
            raise ValueError(f"precision={self.precision!r} must be a multiscale.Precision")


def is_ring_surrogate(surrogate: Any) -> bool:
    """Whether :func:`validate` takes the many-variable path for this surrogate."""
    from ..surrogate._local import LocalEffectiveSDE

    return isinstance(surrogate, LocalEffectiveSDE) or int(getattr(surrogate, "dim", 1)) > 1


def _steps(t: float, h: float) -> int:
    return int(round(t / h))


def _run_surrogate(sur: Any, *, t_end: float, dt: float, x0: np.ndarray, seed: int, member: Any,
                   save_every: int, threads: int | None = None, precision: Precision = Precision.FLOAT64) -> np.ndarray:
    """A surrogate's ``(P, saves, K)`` trajectories from its compiled ``simulate`` (a
    :class:`LocalEffectiveSDE`'s array, or an :class:`EffectiveSDE`'s dataset)."""
    kw = dict(t_end=t_end, dt=dt, x0=x0, seed=seed, member=member, save_every=save_every)
    sig = inspect.signature(sur.simulate).parameters
    extra: dict[str, Any] = {"n_paths": x0.shape[0]} if "n_paths" in sig else {}
    if "threads" in sig and threads is not None:
        extra["threads"] = threads
    if "precision" in sig:
        extra["precision"] = precision
    try:
        res = sur.simulate(**kw, **extra)
    except SimulationError as e:
        # Paths that blew up: keep the run, with those paths non-finite (the checks fail them).
        if hasattr(e, "trajectory"):
            res, status = np.array(e.trajectory, float), np.asarray(e.status)
        elif isinstance(e.dataset, xr.Dataset):
            res, status = e.dataset["trajectory"].values[..., :x0.shape[1]].copy(), e.dataset["status"].values
        else:
            raise
        res[np.asarray(status) != 0] = np.nan
    if isinstance(res, xr.Dataset):
        res = res["trajectory"].values[..., :x0.shape[1]]
    return np.asarray(res, float)


def _run_candidate(obj: Any, sur: Any, *, t_end: float, dt: float, x0: np.ndarray, seed: int, member: Any,
                   save_every: int, threads: int | None = None, precision: Precision = Precision.FLOAT64) -> np.ndarray:
    """A baseline (``simulate(resolved, params, x0, t_end, dt, seed=, save_every=)``, with the
    surrogate's resolved part) or a surrogate-like object."""
    if hasattr(obj, "simulate_torch") or hasattr(obj, "members"):
        return _run_surrogate(obj, t_end=t_end, dt=dt, x0=x0, seed=seed, member=member, save_every=save_every,
                              threads=threads, precision=precision)
    resolved = getattr(obj, "resolved", None) or getattr(sur, "resolved", None)
    params = getattr(obj, "resolved_params", None) or getattr(sur, "resolved_params", None)
    return np.asarray(obj.simulate(resolved, params, x0, t_end, dt, seed=seed, save_every=save_every), float)


def _plain(v: Any) -> Any:
    """JSON for the settings' enums (their values) and anything else (its text)."""
    return getattr(v, "value", str(v))


def independent_starts(info: Any, params: Mapping[str, float], n_paths: int,
                       seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Initial states ``x0 (n_paths, m)``, ``y0 (n_paths, n)`` (or None) of independent paths,
    even for a deterministic (chaotic) system such as Lorenz-96, whose paths from the one default
    start would all be the same: the default initial state plus a small seeded perturbation per
    path (relative 1%), forgotten in the spin-up."""
    dx, dy = (np.atleast_1d(np.asarray(v, float)) for v in info.default_initial(params))
    rng = np.random.default_rng([seed, 7001])
    x0 = dx + 0.01 * (1 + np.abs(dx)) * rng.standard_normal((n_paths, dx.size))
    y0 = dy + 0.01 * (1 + np.abs(dy)) * rng.standard_normal((n_paths, dy.size)) if dy.size else None
    return x0, y0


def _reference(model: Any, params: Mapping[str, float] | None, s: RingValidationSettings,
               reference: xr.Dataset | None, say) -> tuple[np.ndarray, list[str], dict, float | None, str]:
    """The full system's slow trajectories ``(P, T, m)`` every ``sample_every`` after the
    spin-up, the slow names, the parameters, eps and a description."""
    import multiscale as ms
    from ..models import get_model

    if reference is None:
        info = get_model(model)
        p = info.resolve_params(params)
        eps = (info.default_eps if s.eps is None else s.eps) if info.uses_eps else None
        every = _steps(s.sample_every, s.dt)
        n_spin = _steps(s.t_spinup, s.sample_every)
        n_samp = _steps(s.t_end, s.sample_every)
        say(f"full system: {s.n_paths} paths x {s.t_spinup + s.t_end:g} time units at dt = {s.dt:g}")
        x0, y0 = independent_starts(info, p, s.n_paths, s.seed)
        ds = ms.simulate(info, t_end=(n_spin + n_samp) * every * s.dt, dt=s.dt, params=p, eps=eps, x0=x0, y0=y0,
                         n_paths=s.n_paths, seed=s.seed, save_every=every, save_fast=False, threads=s.threads)
        desc = f"simulated: {s.n_paths} paths, spin-up {s.t_spinup:g}, {s.t_end:g} time units at dt = {s.dt:g}"
    else:
        ds = reference
        p = dict(json.loads(ds.attrs["params_json"])) if "params_json" in ds.attrs else dict(params or {})
        e = ds.attrs.get("eps", math.nan)
        eps = float(e) if e is not None and math.isfinite(float(e)) else None
        desc = f"given: {ds.sizes['realization']} paths"
    slow = (json.loads(ds.attrs["slow_states_json"]) if "slow_states_json" in ds.attrs
            else [str(v) for v in ds["state"].values])
    tr = ds["trajectory"].sel(state=slow)
    t = tr["time"].values
    h0 = float(np.median(np.diff(t)))
    every = max(1, _steps(s.sample_every, h0))
    if abs(every * h0 - s.sample_every) > 1e-6 * s.sample_every:
        raise ValueError(f"the reference is sampled every {h0:g}; sample_every={s.sample_every:g} is not a multiple")
    keep = t >= t[0] + s.t_spinup - 1e-9
    x = tr.values[:, keep][:, ::every]
    if not np.all(np.isfinite(x)):
        raise ValueError("the reference trajectories are not finite")
    if x.shape[0] < 4:
        raise ValueError(f"the reference has {x.shape[0]} paths; the bootstrap needs at least 4 independent ones")
    if np.all(np.ptp(x[:, -1], axis=0) <= 1e-12 * (1 + np.abs(x[0, -1]))):
        raise ValueError("the reference paths are identical (a deterministic system started from one state); "
                         "give independent paths")
    return x, [str(v) for v in slow], p, eps, desc


def validate_ring(surrogate: Any, model: Any, *, params: Mapping[str, float] | None = None,
                  settings: RingValidationSettings = RingValidationSettings(),
                  baselines: Mapping[str, Any] | None = None, reference: xr.Dataset | None = None,
                  reaction_coordinate: Sequence[float] | None = None, levels: Sequence[float] | None = None,
                  out: str | Path | None = None, progress: bool = True) -> Any:
    """Validate a surrogate of many slow variables against the full system, beside baselines.

    Parameters
    ----------
    surrogate : LocalEffectiveSDE, EffectiveSDE or any object with ``dim`` and
        ``simulate(t_end=, dt=, x0=, seed=, member=, save_every=)`` (or ``simulate_torch``)
        returning ``(paths, saves, K)`` (or a simulation dataset).
    model : str, ModelInfo or multiscale.Model
        The full system (its slow states, in ring order, are the surrogate's variables).
    params : mapping, optional
        Parameters of the full system.
    settings : RingValidationSettings
    baselines : mapping name -> object, optional
        Each with ``simulate(resolved, params, x0, t_end, dt, seed=, save_every=)`` returning
        ``(paths, saves, K)`` (e.g. :class:`multiscale.surrogate._baselines.PolynomialClosure`; the
        resolved part is the surrogate's), or surrogate-like.
    reference : xarray.Dataset, optional
        Full-system trajectories ``trajectory(realization, time, state)`` (as written by
        :func:`multiscale.simulate`) used instead of simulating; ``t_spinup`` is cut from their
        start, and its ``slow_states_json`` attribute names the slow states.
    reaction_coordinate : sequence of K floats, optional
        Weights ``w`` of ``q = w . X`` for the MFPTs and rates between ``q <= a`` and ``q >= b``.
    levels : (a, b), optional
        The two levels (``a < b``), required with ``reaction_coordinate``.
    out : path, optional
        Folder for ``report.md``, ``validation.png`` and ``validation.nc``.

    Returns
    -------
    ValidationReport
        ``checks`` holds the surrogate's verdicts only (baselines are compared in the report and
        the dataset, not judged), keyed ``"surrogate: <check>"``.
    """
    from ._report import ValidationReport

    s = settings
    if not isinstance(s, RingValidationSettings):
        raise ValueError(f"settings={s!r} must be a RingValidationSettings")
    if (reaction_coordinate is None) != (levels is None):
        raise ValueError("give reaction_coordinate and levels=(a, b) together")
    say = (lambda msg: print(f"  validate: {msg}", flush=True)) if progress else (lambda msg: None)
    t0 = time.perf_counter()
    ref, names, p, eps, ref_desc = _reference(model, params, s, reference, say)
    P, _, K = ref.shape
    if int(getattr(surrogate, "dim", K)) != K:
        raise ValueError(f"the surrogate has {getattr(surrogate, 'dim')} variables; the full system {K} slow ones")
    model_name = getattr(model, "name", str(model))
    timings = {"full system": time.perf_counter() - t0}

    x0 = ref[np.arange(s.n_paths) % P, 0]
    run_t = s.t_burn + s.t_end
    n_burn = _steps(s.t_burn, s.sample_every)
    runs: dict[str, np.ndarray] = {}
    cands: list[tuple[str, Any]] = [("surrogate", surrogate)] + list((baselines or {}).items())
    for i, (name, obj) in enumerate(cands):
        say(f"{name}: {s.n_paths} paths x {run_t:g} time units at dt = {s.surrogate_dt:g}")
        t1 = time.perf_counter()
        every = _steps(s.sample_every, s.surrogate_dt)
        n = _steps(run_t, s.sample_every) * every
        kw = dict(t_end=n * s.surrogate_dt, dt=s.surrogate_dt, x0=x0, seed=s.seed + 101 + i, member=s.member,
                  save_every=every, threads=s.threads, precision=s.precision)
        tr = _run_surrogate(obj, **kw) if i == 0 else _run_candidate(obj, surrogate, **kw)
        if tr.ndim != 3 or tr.shape[0] != s.n_paths or tr.shape[2] != K:
            raise ValueError(f"{name} returned trajectories of shape {tr.shape}; expected ({s.n_paths}, saves, {K})")
        runs[name] = tr[:, n_burn:]
        timings[name] = time.perf_counter() - t1
    finite = {k: bool(np.all(np.isfinite(v))) for k, v in runs.items()}
    lost: list[str] = []
    for k, ok in finite.items():  # a blown-up candidate fails; its statistics use its finite paths
        if not ok:
            good = np.all(np.isfinite(runs[k]), axis=(1, 2))
            if good.sum() >= 4:
                runs[k] = runs[k][good]
            else:  # too few paths left for statistics (the bootstrap resamples paths)
                lost.append(k)
                del runs[k]
    if "surrogate" in lost:
        return _blown_up(model_name, p, s, finite, out)

    say("statistics and distances")
    max_lag = min(s.max_lag, (ref.shape[1] - 1) * s.sample_every, (min(v.shape[1] for v in runs.values()) - 1)
                  * s.sample_every)
    n_lags = _steps(max_lag, s.sample_every) + 1
    ref_stats, rows, edges, ref_counts = compare_ring(
        ref, runs, s.sample_every, max_lag=max_lag, check_lag=min(s.check_lag, max_lag), n_lags=n_lags,
        tol_mean=s.tol_mean, tol_std=s.tol_std, tol_acf=s.tol_acf, tol_ccf0=s.tol_ccf0, bins=s.bins, n_boot=s.n_boot,
        seed=s.seed)
    for r in rows:
        r.checks["finite"] = finite[r.name]
    split = reference_split_distance(ref_counts, edges, "tv", s.seed)
    trans = None
    if reaction_coordinate is not None:
        w = np.asarray(reaction_coordinate, float)
        if w.shape != (K,):
            raise ValueError(f"reaction_coordinate has shape {w.shape}; expected ({K},)")
        a, b = map(float, levels)
        trans = {REFERENCE: transition_statistics(ref @ w, s.sample_every, a, b, n_boot=s.n_boot, seed=s.seed)}
        for name, tr in runs.items():
            trans[name] = transition_statistics(tr @ w, s.sample_every, a, b, n_boot=s.n_boot, seed=s.seed)

    tol = dict(tol_mean=s.tol_mean, tol_std=s.tol_std, tol_acf=s.tol_acf, tol_ccf0=s.tol_ccf0,
               check_lag=min(s.check_lag, max_lag))
    label = {k: v.format(**tol) for k, v in CHECK_NAMES.items()}
    label["finite"] = "every path stays finite"
    sur = rows[0]
    checks = {f"surrogate: {label[k]}": bool(v) for k, v in sur.checks.items()}
    ds = _dataset(ref_stats, rows, edges, ref_counts, names, trans, label, model_name, p, eps, s, checks, split)
    md = _markdown(ref_stats, rows, names, trans, label, model_name, p, eps, s, ref_desc, split, timings,
                   time.perf_counter() - t0, checks)
    if lost:
        md += "\n" + "".join(f"- {k}: fewer than 4 of {s.n_paths} paths stayed finite; left out of the tables.\n"
                             for k in lost)
    report = ValidationReport(dataset=ds, markdown=md, checks=checks)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(out / "validation.nc", engine="h5netcdf")
        report.files.append(str(out / "validation.nc"))
        figs = _figure(ds, out)
        report.files += figs
        if figs:
            report.markdown += "\n## Figures\n\n" + "\n".join(f"![{Path(f).stem}]({Path(f).name})" for f in figs) + "\n"
        (out / "report.md").write_text(report.markdown)
        report.files.append(str(out / "report.md"))
    return report


def _blown_up(model_name: str, p: Mapping[str, float], s: RingValidationSettings, finite: Mapping[str, bool],
              out: str | Path | None) -> ValidationReport:
    """The report of a surrogate that left fewer than 4 finite paths: every check fails."""
    from ._report import ValidationReport

    checks = {f"surrogate: {v.format(tol_mean=s.tol_mean, tol_std=s.tol_std, tol_acf=s.tol_acf, tol_ccf0=s.tol_ccf0, check_lag=s.check_lag)}": False
              for v in CHECK_NAMES.values()}
    checks["surrogate: every path stays finite"] = False
    md = (f"# Validation report: `{model_name}`\n\nThe surrogate blew up: fewer than 4 of its {s.n_paths} paths stayed "
          f"finite at dt = {s.surrogate_dt:g}, so no statistics were computed. Every check fails.\n\n"
          + "".join(f"- [ ] {k}\n" for k in checks))
    ds = xr.Dataset(attrs={"model": model_name, "params_json": json.dumps(dict(p)), "checks": json.dumps(checks),
                           "finite_json": json.dumps(dict(finite))})
    report = ValidationReport(dataset=ds, markdown=md, checks=checks)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        ds.to_netcdf(out / "validation.nc", engine="h5netcdf")
        (out / "report.md").write_text(md)
        report.files += [str(out / "validation.nc"), str(out / "report.md")]
    return report


def _density(counts: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pooled histogram density and its standard error from the spread between paths."""
    w = np.diff(edges)
    f = counts / counts.sum(1, keepdims=True)
    pooled = counts.sum(0) / counts.sum()
    return pooled / w, f.std(0, ddof=1) / math.sqrt(counts.shape[0]) / w


def _dataset(ref: RingStatistics, rows: list[RingComparison], edges, ref_counts, names, trans, label, model, p, eps,
             s: RingValidationSettings, checks, split) -> xr.Dataset:
    cand = [REFERENCE] + [r.name for r in rows]
    stats = [ref] + [r.stats for r in rows]
    compared = [r.name for r in rows]
    dens = [_density(ref_counts, edges)] + [_density(r.counts, edges) for r in rows]
    K = len(names)
    data: dict[str, Any] = {}
    for key, dims, long in (("mean", ("candidate", "site"), "mean of X_k"), ("var", ("candidate", "site"), "variance of X_k"),
                            ("pooled_mean", ("candidate",), "mean over all sites"),
                            ("pooled_var", ("candidate",), "variance over all sites (pooled centring)"),
                            ("acf", ("candidate", "lag"), "pooled autocorrelation of X_k"),
                            ("ccf", ("candidate", "lag"), "correlation of X_k(t) with X_{k+1}(t + lag)"),
                            ("spatial", ("candidate", "separation"), "covariance of X_k and X_{k+d}")):
        data[key] = (dims, np.array([np.asarray(getattr(st, key), float) for st in stats]), {"long_name": long})
        data[f"{key}_se"] = (dims, np.array([np.asarray(st.se[key], float) for st in stats]),
                             {"long_name": f"bootstrap standard error of {key} (paths resampled)"})
    data["density"] = (("candidate", "bin"), np.array([d[0] for d in dens]), {"long_name": "pooled histogram density"})
    data["density_se"] = (("candidate", "bin"), np.array([d[1] for d in dens]))
    for name, key in (("distance", "estimate"), ("distance_stderr", "stderr"), ("distance_noise_floor", "noise_floor")):
        data[name] = (("compared", "kind"), np.array([[getattr(r.density[k], key) for k in KINDS] for r in rows]),
                      {"long_name": f"pooled density vs the full system: {key}"})
    data["distance_ci_lo"] = (("compared", "kind"), np.array([[r.density[k].ci[0] for k in KINDS] for r in rows]))
    data["distance_ci_hi"] = (("compared", "kind"), np.array([[r.density[k].ci[1] for k in KINDS] for r in rows]))
    data["site_tv"] = (("compared", "site"), np.array([r.per_variable_tv for r in rows]),
                       {"long_name": "TV distance of each X_k's density to the full system's"})
    data["site_tv_noise_floor"] = (("compared", "site"), np.array([r.per_variable_floor for r in rows]))
    for key in ("mean_rel", "std_rel", "acf_max", "ccf0"):
        data[f"diff_{key}"] = (("compared",), np.array([r.diff[key] for r in rows], float))
        data[f"diff_{key}_se"] = (("compared",), np.array([r.errors[key] for r in rows], float))
    check_keys = list(CHECK_NAMES)
    data["passed"] = (("compared", "check"), np.array([[int(r.checks[k]) for k in check_keys] for r in rows], np.int8),
                      {"long_name": "1 where the candidate passes the check", "flag_values": [0, 1]})
    coords: dict[str, Any] = {"candidate": cand, "compared": compared, "site": names,
                              "lag": ("lag", ref.lags, {"units": "model time"}), "separation": np.arange(K // 2 + 1),
                              "bin": 0.5 * (edges[1:] + edges[:-1]), "bin_edges": ("bin_edge", edges),
                              "kind": list(KINDS), "check": [label[k] for k in check_keys]}
    if trans is not None:
        coords["direction"] = ["a_to_b", "b_to_a"]
        tr = [trans[c] for c in cand]
        data["mfpt"] = (("candidate", "direction"), np.array([[t.mfpt_ab, t.mfpt_ba] for t in tr]),
                        {"units": "model time", "long_name": "mean first passage time along q = w . X"})
        data["mfpt_se"] = (("candidate", "direction"), np.array([[t.mfpt_ab_se, t.mfpt_ba_se] for t in tr]))
        data["transitions"] = (("candidate", "direction"), np.array([[t.n_ab, t.n_ba] for t in tr]))
    attrs = {"title": f"multiscale validation (many slow variables) of a surrogate of {model}", "model": model,
             "params": json.dumps(p, default=float), "eps": float(eps) if eps is not None else float("nan"),
             "reference": "full system (no exact limit is known for this system)",
             "settings": json.dumps(asdict(s), default=_plain), "checks": json.dumps(checks),
             "reference_split_tv": float(split), "multiscale_version": build_info()["version"]}
    if trans is not None:
        attrs["levels"] = json.dumps([trans[REFERENCE].a, trans[REFERENCE].b])
    return xr.Dataset(data, coords=coords, attrs=attrs)


def _pm(v: float, se: float, scale: float = 1.0, fmt: str = ".4g", pct: bool = False) -> str:
    if not math.isfinite(v):
        return "n/a"
    if pct:
        return f"{100 * v:+.2f}% ± {100 * 2 * se:.2f}%" if math.isfinite(se) else f"{100 * v:+.2f}%"
    return f"{scale * v:{fmt}} ± {2 * scale * se:.2g}" if math.isfinite(se) else f"{scale * v:{fmt}}"


def _markdown(ref, rows, names, trans, label, model, p, eps, s, ref_desc, split, timings, seconds, checks) -> str:
    K = len(names)
    lags = ref.lags
    show = [lag for lag in (0.1, 0.2, 0.5, 1.0, 2.0, 3.0, 5.0) if lag <= lags[-1] + 1e-9]
    idx = [int(np.argmin(np.abs(lags - lag))) for lag in show]
    ptxt = ", ".join(f"{k}={v:g}" for k, v in p.items() if isinstance(v, (int, float)))
    lines = [f"# Validation report: `{model}` ({K} slow variables)", "",
             f"Full system `{model}` ({ptxt}" + (f", eps = {eps:g}" if eps is not None else "") + f"); reference "
             f"trajectories {ref_desc}. No exact limit is known for this system: the full system is the reference.",
             f"Candidates: the learned surrogate and {len(rows) - 1} baseline(s), each {s.n_paths} paths of "
             f"{s.t_end:g} time units at dt = {s.surrogate_dt:g} from the full system's states after its spin-up "
             f"(first {s.t_burn:g} time units discarded), sampled every {s.sample_every:g}. Errors: ± 2 bootstrap "
             f"standard errors over paths. Total time {seconds:.0f} s ("
             + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()) + ").", "",
             "## Statistics of X_k (pooled over the sites)", "",
             "| statistic | " + " | ".join([REFERENCE] + [r.name for r in rows]) + " |", "|---" * (len(rows) + 2) + "|"]
    stats = [ref] + [r.stats for r in rows]
    lines.append("| mean | " + " | ".join(_pm(st.pooled_mean, st.se["pooled_mean"]) for st in stats) + " |")
    lines.append("| std | " + " | ".join(_pm(math.sqrt(st.pooled_var), st.se["pooled_var"] / (2 * math.sqrt(st.pooled_var)))
                                         for st in stats) + " |")
    for lag, i in zip(show, idx):
        lines.append(f"| ACF at {lags[i]:g} | " + " | ".join(_pm(st.acf[i], st.se["acf"][i], fmt=".3f") for st in stats) + " |")
    for i in [0] + idx[:2]:
        lines.append(f"| neighbour CCF at {lags[i]:g} | "
                     + " | ".join(_pm(st.ccf[i], st.se["ccf"][i], fmt=".3f") for st in stats) + " |")
    for d in range(K // 2 + 1):
        lines.append(f"| Cov(X_k, X_k+{d}) | " + " | ".join(_pm(st.spatial[d], st.se["spatial"][d]) for st in stats) + " |")
    lines += ["", "## Against the full system", "",
              f"Differences ± 2 standard errors; the pooled density's distances with their noise floors (95% "
              f"quantile of a permutation null over paths; two halves of the full system's paths differ by TV "
              f"{split:.3g}).", "",
              "| candidate | mean | std | max ACF diff (lag <= " + f"{min(s.check_lag, float(ref.lags[-1])):g}) | CCF diff at 0 | "
              + " | ".join(f"{k.upper()} (floor)" for k in KINDS) + " |", "|---" * (5 + len(KINDS)) + "|"]
    for r in rows:
        lines.append(f"| {r.name} | {_pm(r.diff['mean_rel'], r.errors['mean_rel'], pct=True)} | "
                     f"{_pm(r.diff['std_rel'], r.errors['std_rel'], pct=True)} | "
                     f"{_pm(r.diff['acf_max'], r.errors['acf_max'], fmt='.3f')} | "
                     f"{_pm(r.diff['ccf0'], r.errors['ccf0'], fmt='+.3f')} | "
                     + " | ".join(f"{r.density[k].estimate:.3g} ({r.density[k].noise_floor:.2g})" for k in KINDS) + " |")
    lines += ["", "## Per variable", "", "Mean and std of each X_k ± 2 standard errors; TV distance of its density "
              "to the full system's (noise floor).", "",
              "| variable | " + " | ".join(f"{c} mean / std" for c in [REFERENCE] + [r.name for r in rows])
              + " | " + " | ".join(f"{r.name} TV" for r in rows) + " |", "|---" * (2 + 2 * len(rows)) + "|"]
    for k, nm in enumerate(names):
        ms = [f"{_pm(st.mean[k], st.se['mean'][k], fmt='.3f')} / {math.sqrt(st.var[k]):.3f}" for st in stats]
        tv = [f"{r.per_variable_tv[k]:.3g} ({r.per_variable_floor[k]:.2g})" for r in rows]
        lines.append(f"| {nm} | " + " | ".join(ms) + " | " + " | ".join(tv) + " |")
    if trans is not None:
        t_ref = trans[REFERENCE]
        lines += ["", "## Metastability along the reaction coordinate", "",
                  f"q = w . X, A = {{q <= {t_ref.a:g}}}, B = {{q >= {t_ref.b:g}}}: MFPT = time spent coming from one "
                  "set / number of transitions to the other (from each candidate's trajectories), rate = 1/MFPT.", "",
                  "| candidate | MFPT A -> B | MFPT B -> A | rate A -> B | rate B -> A | transitions |",
                  "|---|---|---|---|---|---|"]
        for c, t in trans.items():
            rates = [f"{1 / v:.4g}" if math.isfinite(v) else "n/a (no transitions)" for v in (t.mfpt_ab, t.mfpt_ba)]
            lines.append(f"| {c} | {_pm(t.mfpt_ab, t.mfpt_ab_se)} | {_pm(t.mfpt_ba, t.mfpt_ba_se)} | "
                         f"{rates[0]} | {rates[1]} | {t.n_ab} / {t.n_ba} |")
    lines += ["", "## Which candidate passes what", "",
              "Tolerances widened by twice the difference's standard error; the density at its noise floor.", "",
              "| check | " + " | ".join(r.name for r in rows) + " |", "|---" * (len(rows) + 1) + "|"]
    for key in rows[0].checks:
        lines.append(f"| {label[key]} | " + " | ".join("pass" if r.checks.get(key) else "FAIL" for r in rows) + " |")
    worse = _worse(rows)
    if len(rows) > 1:
        lines += ["", "### Learned closure against the baselines", ""]
        lines += [f"- {w}" for w in worse] if worse else \
            ["- The learned closure is at least as close to the full system as every baseline on each statistic."]
    lines += ["", "## Checks (surrogate)", ""] + [f"- [{'x' if v else ' '}] {k}" for k, v in checks.items()]
    lines += ["", f"multiscale {build_info()['version']}; seed {s.seed}; settings: "
              f"`{json.dumps(asdict(s), default=_plain)}`", ""]
    return "\n".join(lines)


def _worse(rows: list[RingComparison]) -> list[str]:
    """Where the learned surrogate (rows[0]) is further from the full system than a baseline."""
    sur, out = rows[0], []
    measures = {"mean": lambda r: abs(r.diff["mean"]), "std": lambda r: abs(r.diff["std_rel"]),
                "ACF (largest difference up to the check lag)": lambda r: r.diff["acf_max"],
                "neighbour correlation at lag 0": lambda r: abs(r.diff["ccf0"]),
                "pooled density (TV)": lambda r: r.density["tv"].estimate}
    for b in rows[1:]:
        for what, f in measures.items():
            if f(sur) > f(b):
                out.append(f"{what}: the learned closure is further from the full system ({f(sur):.3g}) than "
                           f"{b.name} ({f(b):.3g}).")
    return out


def _figure(ds: xr.Dataset, out: Path) -> list[str]:
    """validation.png: pooled density, ACF, neighbour CCF, spatial covariance, per-site moments."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return []
    cands = [str(c) for c in ds["candidate"].values]
    colors = {c: ("k" if i == 0 else f"C{i - 1}") for i, c in enumerate(cands)}
    fig, ax = plt.subplots(2, 3, figsize=(15, 8))
    x, lag, sep = ds["bin"].values, ds["lag"].values, ds["separation"].values
    for c in cands:
        col, lw = colors[c], (1.6 if c == REFERENCE else 1.1)
        d, se = ds["density"].sel(candidate=c).values, ds["density_se"].sel(candidate=c).values
        ax[0, 0].plot(x, d, color=col, lw=lw, label=c)
        ax[0, 0].fill_between(x, d - 2 * se, d + 2 * se, color=col, alpha=0.2)
        for a, key in ((ax[0, 1], "acf"), (ax[0, 2], "ccf")):
            v, e = ds[key].sel(candidate=c).values, ds[f"{key}_se"].sel(candidate=c).values
            a.plot(lag, v, color=col, lw=lw, label=c)
            a.fill_between(lag, v - 2 * e, v + 2 * e, color=col, alpha=0.2)
        v, e = ds["spatial"].sel(candidate=c).values, ds["spatial_se"].sel(candidate=c).values
        off = 0.08 * (cands.index(c) - (len(cands) - 1) / 2)
        ax[1, 0].errorbar(sep + off, v, yerr=2 * e, fmt="o-", color=col, ms=4, lw=lw, label=c)
        sites = np.arange(ds.sizes["site"])
        m, me = ds["mean"].sel(candidate=c).values, ds["mean_se"].sel(candidate=c).values
        ax[1, 1].errorbar(sites + off, m, yerr=2 * me, fmt="o", color=col, ms=4, label=c)
        sd = np.sqrt(ds["var"].sel(candidate=c).values)
        ax[1, 2].errorbar(sites + off, sd, yerr=ds["var_se"].sel(candidate=c).values / sd, fmt="o", color=col, ms=4,
                          label=c)  # 2 s.e. of the std = 2 se(var) / (2 std)
    ax[0, 0].set(title="pooled density of X_k (± 2 s.e.; tails in the end bins)", xlabel="X_k", ylabel="density")
    ax[0, 1].set(title="autocorrelation of X_k (± 2 s.e.)", xlabel="lag")
    ax[0, 2].set(title="neighbour correlation X_k(t), X_k+1(t + lag)", xlabel="lag")
    ax[1, 0].set(title="spatial covariance Cov(X_k, X_k+d)", xlabel="d")
    ax[1, 1].set(title="mean of each X_k (± 2 s.e.)", xlabel="k")
    ax[1, 2].set(title="std of each X_k (± 2 s.e.)", xlabel="k")
    for a in ax.ravel():
        a.legend(fontsize=7)
    fig.tight_layout()
    path = out / "validation.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [str(path)]
