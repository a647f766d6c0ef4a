"""The validation report: full system, learned surrogate and exact limit on the same observables.

For a catalogue model with one slow variable and a learned 1-D :class:`EffectiveSDE`,
:func:`validate` measures

* the invariant density of the slow variable (full system: kernel histograms over independent
  path batches; surrogate and exact limit: quadrature of the stationary Fokker-Planck equation),
  and the distances between them (TV, Hellinger, KL, W1) with intervals;
* metastability: wells of the effective potential, mean first passage times between the well
  minima (full system: simulation with Brownian-bridge crossing detection in the kernel;
  surrogate and limit: the exact 1-D integral formula), rates, and the slowest implied
  timescale (full system: a Markov state model at a chosen lag; surrogate and limit: the
  spectral gap of the generator);
* a rare event, P(reach the right well before the left one) from near the left well, by
  adaptive multilevel splitting on the full system (clones in the compiled kernels) and on the
  surrogate, and exactly by the committor for the surrogate and the limit;

and keeps three errors apart: modelling (full system vs exact limit, the finite-eps effect),
learning (surrogate vs exact limit) and total (surrogate vs full system). The surrogate's
uncertainty is its ensemble spread: every quadrature is repeated for each member.

A surrogate of many slow variables (a ring such as Lorenz-96's) goes to
:func:`._ring_report.validate_ring` instead (settings: :class:`._ring_report.RingValidationSettings`).
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import xarray as xr

from .._device import build_info
from ..models import get_model
from ._ams import AMSOptions, AMSResult, ams
from ._distances import DistanceKind, _divergence, bin_probabilities, density_distance
from ._exact1d import committor, find_wells, generator_eigenvalues, mfpt, stationary_density
from ._invariant import DensityEstimate, stationary_histogram
from ._limits import ExactLimit, exact_limit
from ._msm import msm_implied_timescales
from ._passage import mean_first_passage_time
from ._stepsize import step_size_check

_KINDS = ("tv", "hellinger", "kl", "w1")


@dataclass(frozen=True)
class ValidationSettings:
    """Sizes and steps of the validation runs (model time units).

    Attributes
    ----------
    eps : float or None
        Scale separation of the full system (None: the model's default).
    dt : float
        Time step of the full system (resolve the fast scale: dt <= eps/50 or so).
    density_paths, density_batches, t_burn, t_density, bins :
        Invariant-density runs: paths split into independent batches, burn-in, final time, bins.
    sample_every : float
        Sampling interval of the slow variable for the Markov state model.
    msm_lag : float
        Lag time of the Markov state model.
    msm_bins : int
    mfpt_paths, mfpt_max_time :
        First-passage runs between the well minima.
    ams : AMSOptions
        Splitting settings; its ``dt`` is replaced by ``dt`` (full system) and ``surrogate_dt``.
    ams_offset : float
        The AMS start lies this far from the left well's minimum, towards the right well.
    ams_surrogate : bool
        Also run AMS on the surrogate (the 1-D committor is exact anyway).
    surrogate_dt : float
        Time step of surrogate simulations (AMS, the step-size check).
    step_check_paths, step_check_time :
        Step-size check of ``surrogate_dt`` (:func:`step_size_check`: ``dt`` against ``dt/2``
        on the same Brownian path, from the surrogate's stationary density); 0 paths: skip it.
    seed : int
    threads : int or None
    """

    eps: float | None = 0.03
    dt: float = 2.5e-4
    density_paths: int = 1600
    density_batches: int = 16
    t_burn: float = 20.0
    t_density: float = 120.0
    bins: int = 60
    sample_every: float = 0.1
    msm_lag: float = 4.0
    msm_bins: int = 30
    mfpt_paths: int = 2000
    mfpt_max_time: float = 5000.0
    ams: AMSOptions = AMSOptions(n_replicas=100, kill=5, n_runs=40, max_time=1e3)
    ams_offset: float = 0.25
    ams_surrogate: bool = True
    surrogate_dt: float = 1e-2
    step_check_paths: int = 4000
    step_check_time: float = 20.0
    seed: int = 0
    threads: int | None = None

    @classmethod
    def quick(cls, **kw: Any) -> "ValidationSettings":
        """Small runs for tests and CI (wider intervals, same code paths)."""
        base = dict(density_paths=96, density_batches=8, t_burn=10.0, t_density=50.0, mfpt_paths=96, step_check_paths=1000,
                    ams=AMSOptions(n_replicas=40, kill=4, n_runs=8, max_time=1e3), dt=5e-4, eps=0.05)
        base.update(kw)
        return cls(**base)


@dataclass
class ValidationReport:
    """What :func:`validate` measured: ``dataset`` holds every number, ``markdown`` the report,
    ``checks`` the pass/fail verdicts, ``files`` what was written."""

    dataset: xr.Dataset
    markdown: str
    checks: dict
    files: list = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return all(self.checks.values())


def _surrogate_fields(sde: Any, lo: float, hi: float, n: int = 8001) -> list:
    """Drift and diffusion of the ensemble mean (first) and of each member, as cubic splines of
    one tabulation on a fine grid: the quadratures call them many times, and one batched network
    evaluation replaces thousands (spline error ~ h^4, below 1e-10 here)."""
    from scipy.interpolate import CubicSpline

    x = np.linspace(lo, hi, n)
    b = np.asarray(sde.members_drift(x[:, None]))[..., 0]         # (E, n)
    A = np.asarray(sde.members_diffusion(x[:, None]))[..., 0, 0]  # (E, n)
    rows = [(b.mean(0), A.mean(0))] + list(zip(b, A))
    return [(CubicSpline(x, bb), CubicSpline(x, aa)) for bb, aa in rows]


def _spread(values: np.ndarray) -> float:
    """Predictive spread of an ensemble quantity (as EffectiveSDE.drift_spread)."""
    v = np.asarray(values, float)
    return float(v.std(ddof=1) * math.sqrt(1 + 1 / v.size)) if v.size > 1 else math.nan


def _sample_density(x: np.ndarray, rho: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n draws from a tabulated density by inverse CDF (fixed seed)."""
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(x))])
    cdf /= cdf[-1]
    u = (np.arange(n) + np.random.default_rng(seed).random(n)) / n  # stratified
    return np.interp(u, cdf, x)


def validate(surrogate: Any, model: Any, *, params: Mapping[str, float] | None = None,
             settings: "ValidationSettings | RingValidationSettings" = ValidationSettings(),
             estimates: xr.Dataset | None = None, out: str | Path | None = None, progress: bool = True,
             baselines: Mapping[str, Any] | None = None, reference: xr.Dataset | None = None,
             reaction_coordinate: Sequence[float] | None = None,
             levels: Sequence[float] | None = None) -> ValidationReport:
    """Validate a learned effective SDE against the full system (and the exact limit in 1-D).

    One slow variable: the report described in this module. Many slow variables (a
    :class:`~multiscale.surrogate._local.LocalEffectiveSDE`, or any surrogate with ``dim > 1``):
    :func:`._ring_report.validate_ring`, the full system against the surrogate and the
    ``baselines`` on per-variable and pooled densities, moments, ACF, neighbour CCF, spatial
    covariance and (with ``reaction_coordinate`` and ``levels``) MFPTs and rates.

    Parameters
    ----------
    surrogate : EffectiveSDE, LocalEffectiveSDE or path
        The learned model (or a ``surrogate.h5`` file).
    model : str, ModelInfo or multiscale.Model
        The full system (a catalogue name for one slow variable).
    params : dict, optional
        Its parameters.
    settings : ValidationSettings or RingValidationSettings
        Many variables: a :class:`RingValidationSettings`; a ``ValidationSettings`` is mapped to
        ``RingValidationSettings`` (``.quick()`` where its ``density_paths`` is at most the quick
        variant's) with its ``seed``, ``threads``, ``eps`` and ``dt``.
    estimates : xarray.Dataset, optional
        1-D: averaging estimates (``F``, ``A`` with standard errors), drawn in the drift figure.
    out : path, optional
        Folder for ``report.md``, ``validation.nc`` and the figures.
    baselines : mapping name -> object, optional
        Many variables: closures run beside the surrogate, each with
        ``simulate(resolved, params, x0, t_end, dt, seed=, save_every=) -> (paths, saves, K)``.
    reference : xarray.Dataset, optional
        Many variables: full-system trajectories to use instead of simulating.
    reaction_coordinate : sequence of K floats, optional
        Many variables: weights of ``q = w . X`` for MFPTs and rates, with ``levels=(a, b)``.
    levels : (a, b), optional
    """
    from ..surrogate import load_surrogate
    from ._ring_report import RingValidationSettings, is_ring_surrogate, validate_ring

    if isinstance(surrogate, (str, Path)):
        surrogate = load_surrogate(surrogate)
    if is_ring_surrogate(surrogate):
        if isinstance(settings, ValidationSettings):
            # its seed, threads, eps and dt; the quick sizes where it is the quick variant
            quick = settings.density_paths <= ValidationSettings.quick().density_paths
            settings = (RingValidationSettings.quick if quick else RingValidationSettings)(
                seed=settings.seed, threads=settings.threads, eps=settings.eps, dt=settings.dt)
        return validate_ring(surrogate, model, params=params, settings=settings, baselines=baselines,
                             reference=reference, reaction_coordinate=reaction_coordinate, levels=levels, out=out,
                             progress=progress)
    if baselines is not None or reference is not None or reaction_coordinate is not None or levels is not None:
        raise ValueError("baselines=, reference=, reaction_coordinate= and levels= apply to surrogates of many "
                         "slow variables")
    if not isinstance(settings, ValidationSettings):
        raise ValueError(f"settings={settings!r} must be a multiscale.validate.ValidationSettings")
    sde = surrogate
    info = get_model(model)
    p = info.resolve_params(params)
    m, _ = info.dims(p)
    if m != 1 or sde.dim != 1:
        raise ValueError(f"validate needs one slow variable; model {info.name!r} has {m} and the surrogate "
                         f"{sde.dim}")
    s = settings
    eps = (info.default_eps if s.eps is None else s.eps) if info.uses_eps else None
    limit: ExactLimit | None = exact_limit(info, p)
    say = (lambda msg: print(f"  validate: {msg}", flush=True)) if progress else (lambda msg: None)
    t_start = time.perf_counter()

    # Domain: the surrogate's data range (a neural drift is not trusted far outside it).
    lo, hi = float(sde.x_lo[0]), float(sde.x_hi[0])
    if not (math.isfinite(lo) and math.isfinite(hi)):
        c, w = float(sde.x_mean[0]), float(sde.x_scale[0])
        lo, hi = c - 4 * w, c + 4 * w
    xq = np.linspace(lo, hi, 4001)
    tab = _surrogate_fields(sde, lo, hi)
    fields = {"surrogate": tab[0]}
    members = tab[1:]
    if limit is not None:
        fields["exact"] = (limit.drift, limit.diffusion)

    # ---- invariant density: quadrature -------------------------------------------------------
    edges = np.linspace(lo, hi, s.bins + 1)
    rho = {k: stationary_density(b, A, lo, hi, n=4001)[1] for k, (b, A) in fields.items()}
    rho_members = np.array([stationary_density(b, A, lo, hi, n=4001)[1] for b, A in members])
    pdf = {k: (lambda v, r=r: np.interp(v, xq, r)) for k, r in rho.items()}
    probs = {k: bin_probabilities(f, edges) for k, f in pdf.items()}
    probs_members = np.array([bin_probabilities(lambda v, r=r: np.interp(v, xq, r), edges) for r in rho_members])

    # ---- invariant density: full system ------------------------------------------------------
    say(f"full-system invariant density ({s.density_paths} paths, T = {s.t_density}, eps = {eps})")
    x0 = _sample_density(xq, rho["surrogate"], s.density_paths, s.seed)[:, None]
    t0 = time.perf_counter()
    dens = stationary_histogram(info, params=p, eps=eps, lo=lo, hi=hi, bins=s.bins, t_burn=s.t_burn,
                                t_end=s.t_density, dt=s.dt, n_paths=s.density_paths, n_batches=s.density_batches,
                                x0=x0, seed=s.seed, threads=s.threads, sample_every=s.sample_every)
    t_density = time.perf_counter() - t0

    def dist_row(kind: str) -> dict:
        row: dict[str, Any] = {}
        tot = density_distance(dens.counts, probs["surrogate"], edges=edges, kind=kind, seed=s.seed)
        row["total"] = tot
        if limit is not None:
            row["modelling"] = density_distance(dens.counts, probs["exact"], edges=edges, kind=kind, seed=s.seed)
            # learning error: exact quadrature for the mean model; the members give its spread
            def one(q: np.ndarray) -> float:
                return float(_divergence(DistanceKind(kind), q, probs["exact"], np.diff(edges)))
            row["learning"] = (one(probs["surrogate"]), _spread([one(q) for q in probs_members]))
        return row

    distances = {k: dist_row(k) for k in _KINDS}

    # ---- metastability ----------------------------------------------------------------------
    ref_fields = fields.get("exact", fields["surrogate"])
    wells = find_wells(*ref_fields, lo, hi)
    sur_wells = find_wells(*fields["surrogate"], lo, hi)
    meta: dict[str, Any] = {"wells": [w.minimum for w in wells], "surrogate_wells": [w.minimum for w in sur_wells]}
    mfpts: dict[str, dict] = {}
    ams_full: AMSResult | None = None
    ams_sur: AMSResult | None = None
    if len(wells) >= 2:
        two = sorted(sorted(wells, key=lambda w: -w.depth)[:2], key=lambda w: w.minimum)
        xl, xr = two[0].minimum, two[1].minimum
        meta.update(x_left=xl, x_right=xr)
        for name, (a, b) in (("left_to_right", (xl, xr)), ("right_to_left", (xr, xl))):
            row: dict[str, Any] = {}
            for k, (bf, Af) in fields.items():
                row[k] = mfpt(bf, Af, a, b, lower=lo if b > a else hi)
            row["surrogate_spread"] = _spread([mfpt(bf, Af, a, b, lower=lo if b > a else hi) for bf, Af in members])
            say(f"full-system MFPT {name.replace('_', ' ')} ({s.mfpt_paths} paths)")
            res = mean_first_passage_time(info, params=p, eps=eps, x0=a, target=b, dt=s.dt,
                                          n_paths=s.mfpt_paths, max_time=s.mfpt_max_time, seed=s.seed + 11,
                                          threads=s.threads)
            row["full"], row["full_stderr"] = res.mean, res.stderr
            mfpts[name] = row
        # implied timescale: spectral gap (exact 1-D) and a Markov state model of the full system
        its = {k: float(-1.0 / generator_eigenvalues(bf, Af, lo, hi, k=2, n=1500)[1]) for k, (bf, Af) in fields.items()}
        its["surrogate_spread"] = _spread([-1.0 / generator_eigenvalues(bf, Af, lo, hi, k=2, n=1500)[1]
                                           for bf, Af in members])
        lag = max(1, int(round(s.msm_lag / s.sample_every)))
        msm = msm_implied_timescales(dens.samples, edges=np.linspace(lo, hi, s.msm_bins + 1), lag=lag,
                                     dt=s.sample_every, k=1, seed=s.seed)
        its["full"], its["full_stderr"] = float(msm.timescales[0]), float(msm.stderr[0])
        # implied timescale against the lag: an MSM is trusted where it has levelled off
        lags = sorted({max(1, int(round(f * lag))) for f in (0.125, 0.25, 0.5, 1.0, 2.0)})
        scan = [msm_implied_timescales(dens.samples, edges=np.linspace(lo, hi, s.msm_bins + 1), lag=q,
                                       dt=s.sample_every, k=1, seed=s.seed, n_boot=100) for q in lags]
        its["lag_scan"] = {"lag_time": [r.lag_time for r in scan], "timescale": [float(r.timescales[0]) for r in scan],
                           "stderr": [float(r.stderr[0]) for r in scan]}
        meta["implied_timescale"] = its
        # rare event: reach the right well before falling back into the left one
        x_start = xl + s.ams_offset
        rare: dict[str, Any] = {"a": xl, "b": xr, "x0": x_start}
        for k, (bf, Af) in fields.items():
            rare[k] = float(committor(bf, Af, xl, xr, x_start))
        rare["surrogate_spread"] = _spread([float(committor(bf, Af, xl, xr, x_start)) for bf, Af in members])
        say(f"AMS on the full system ({s.ams.n_runs} runs x {s.ams.n_replicas} replicas)")
        ams_full = ams(info, params=p, eps=eps, x0=x_start, a=xl, b=xr, options=replace(s.ams, dt=s.dt),
                       seed=s.seed + 21,
                       threads=s.threads)
        rare["full"], rare["full_stderr"] = ams_full.probability, ams_full.stderr
        if s.ams_surrogate:
            say("AMS on the surrogate")
            ams_sur = ams(sde, x0=x_start, a=xl, b=xr, options=replace(s.ams, dt=s.surrogate_dt), seed=s.seed + 22,
                          threads=s.threads)
            rare["surrogate_ams"], rare["surrogate_ams_stderr"] = ams_sur.probability, ams_sur.stderr
        meta["rare"] = rare
        meta["mfpt"] = mfpts

    step = None
    if s.step_check_paths:
        say(f"step-size check of the surrogate at dt = {s.surrogate_dt:g} ({s.step_check_paths} paths)")
        n_check = int(s.step_check_paths)
        step = step_size_check(sde, dt=s.surrogate_dt, t_end=s.step_check_time, n_paths=n_check,
                               x0=_sample_density(xq, rho["surrogate"], n_check, s.seed + 31)[:, None],
                               seed=s.seed + 31, member=None, threads=s.threads)
    report = _assemble(sde, info.name, p, eps, s, limit, lo, hi, xq, rho, rho_members, dens, distances, meta,
                       ams_full, ams_sur, estimates, t_density, time.perf_counter() - t_start, step)
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        report.dataset.to_netcdf(out / "validation.nc", engine="h5netcdf")
        report.files.append(str(out / "validation.nc"))
        figs = _figures(report, sde, xq, rho, rho_members, dens, limit, estimates, meta, ams_full, ams_sur, out)
        report.files += figs
        if figs:
            report.markdown += "\n## Figures\n\n" + "\n".join(f"![{Path(f).stem}]({Path(f).name})" for f in figs) + "\n"
        (out / "report.md").write_text(report.markdown)
        report.files.append(str(out / "report.md"))
    return report


def _fmt_ci(v: float, se: float) -> str:
    return f"{v:.4g} ± {1.96 * se:.2g}" if np.isfinite(se) else f"{v:.4g}"


def _rel(a: float, b: float, se_a: float = 0.0, se_b: float = 0.0) -> tuple[float, float]:
    """(a - b)/b and its standard error (independent a, b)."""
    r = (a - b) / b
    return r, math.hypot(se_a / b, a * se_b / b**2)


def _assemble(sde, model, p, eps, s, limit, lo, hi, xq, rho, rho_members, dens: DensityEstimate, distances, meta,
              ams_full, ams_sur, estimates, t_density, seconds, step=None) -> ValidationReport:
    checks: dict[str, bool] = {}
    three: list[tuple[str, str, str, str]] = []
    tv = distances["tv"]
    if limit is not None:
        checks["full-system density consistent with the exact limit (TV)"] = tv["modelling"].consistent_with_zero
        checks["surrogate density within TV 0.03 of the exact limit"] = tv["learning"][0] < 0.03
    for kind in _KINDS:
        d = distances[kind]
        row = [f"density {kind.upper()}"]
        row.append(f"{d['modelling'].estimate:.3g} [{d['modelling'].ci[0]:.2g}, {d['modelling'].ci[1]:.2g}]"
                   f" (noise floor {d['modelling'].noise_floor:.2g})" if "modelling" in d else "n/a")
        row.append(f"{d['learning'][0]:.3g} ± {2 * d['learning'][1]:.2g} (members)" if "learning" in d else "n/a")
        row.append(f"{d['total'].estimate:.3g} [{d['total'].ci[0]:.2g}, {d['total'].ci[1]:.2g}]"
                   f" (noise floor {d['total'].noise_floor:.2g})")
        three.append(tuple(row))
    def errors(label: str, r: dict) -> None:
        """One row of the three-error table from {full, full_stderr, surrogate, surrogate_spread,
        exact?}: relative differences with 95% (simulation) / 2-spread (surrogate) half-widths."""
        pct = lambda e, k: f"{100 * e[0]:+.1f}% ± {100 * k * e[1]:.1f}%"  # noqa: E731
        tot = _rel(r["surrogate"], r["full"], r["surrogate_spread"], r["full_stderr"])
        if "exact" not in r:
            three.append((label, "n/a", "n/a", pct(tot, 1.96)))
            return
        mod, lrn = _rel(r["full"], r["exact"], r["full_stderr"]), _rel(r["surrogate"], r["exact"], r["surrogate_spread"])
        three.append((label, pct(mod, 1.96), pct(lrn, 2.0), pct(tot, 1.96)))
        if label.startswith("MFPT"):
            checks[f"surrogate {label} within 15% of the exact limit"] = abs(lrn[0]) < 0.15

    for name, r in meta.get("mfpt", {}).items():
        errors(f"MFPT {name.replace('_', ' ')}", r)
    if "implied_timescale" in meta:
        errors("slowest implied timescale", meta["implied_timescale"])
    if "rare" in meta:
        r = meta["rare"]
        errors("P(B before A), AMS / committor", r)
        if "surrogate_ams" in r:
            z = (r["surrogate_ams"] - r["surrogate"]) / r["surrogate_ams_stderr"]
            checks["AMS on the surrogate agrees with its exact committor (|z| < 4)"] = abs(z) < 4

    lines = [f"# Validation report: `{model}`", "",
             f"Full system `{model}` with {', '.join(f'{k}={v:g}' for k, v in p.items())}"
             + (f", eps = {eps:g}" if eps is not None else "") + f", dt = {s.dt:g}; learned surrogate with "
             f"{sde.members} ensemble members; exact limit: {limit.description if limit else 'none known'}.",
             f"Domain [{lo:.3g}, {hi:.3g}] (the surrogate's data range, reflecting for the quadratures). "
             f"Total time {seconds:.0f} s.", "",
             "## Three errors, kept apart", "",
             "Modelling = full system vs exact limit (the finite-eps effect); learning = surrogate vs exact "
             "limit; total = surrogate vs full system. Intervals: 95% (simulation) and ± 2 ensemble spreads "
             "(surrogate).", "",
             "| quantity | modelling (full vs exact) | learning (surrogate vs exact) | total (surrogate vs full) |",
             "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in three]
    lines += ["", "## Invariant density of the slow variable", "",
              f"Full system: kernel histograms of {s.density_paths} paths in {s.density_batches} independent "
              f"batches over t in ({s.t_burn:g}, {s.t_density:g}] ({t_density:.0f} s); "
              f"{100 * dens.fraction_outside:.2g}% of path-states fell outside the domain.", "",
              "| statistic | full system | surrogate | exact limit |", "|---|---|---|---|"]
    for label, f in (("E[X]", lambda v: v), ("E[X^2]", lambda v: v**2), ("P(X > 0)", lambda v: (v > 0).astype(float))):
        est, se = dens.moment(f)
        q = {k: float(np.trapezoid(f(xq) * r, xq)) for k, r in rho.items()}
        qm = [float(np.trapezoid(f(xq) * r, xq)) for r in rho_members]
        lines.append(f"| {label} | {_fmt_ci(est, se)} | {q['surrogate']:.4g} ± {2 * _spread(qm):.2g} | "
                     f"{q['exact']:.4g} |" if "exact" in q else f"| {label} | {_fmt_ci(est, se)} | {q['surrogate']:.4g} | n/a |")
    if "mfpt" in meta:
        lines += ["", "## Metastability", "",
                  f"Wells (minima of the effective potential): {', '.join(f'{w:.4f}' for w in meta['wells'])}"
                  f" (surrogate's own: {', '.join(f'{w:.4f}' for w in meta['surrogate_wells'])}).", "",
                  "| quantity | full system (simulation) | surrogate (exact 1-D) | exact limit |", "|---|---|---|---|"]
        for name, r in meta["mfpt"].items():
            lines.append(f"| MFPT {name.replace('_', ' ')} | {_fmt_ci(r['full'], r['full_stderr'])} | "
                         f"{r['surrogate']:.4g} ± {2 * r['surrogate_spread']:.2g} | {r.get('exact', float('nan')):.4g} |")
            lines.append(f"| rate {name.replace('_', ' ')} | {1 / r['full']:.4g} | {1 / r['surrogate']:.4g} | "
                         f"{1 / r.get('exact', float('nan')):.4g} |")
        r = meta["implied_timescale"]
        lines.append(f"| slowest implied timescale (MSM at lag {s.msm_lag:g} / spectral gap) | "
                     f"{_fmt_ci(r['full'], r['full_stderr'])} | {r['surrogate']:.4g} ± {2 * r['surrogate_spread']:.2g} | "
                     f"{r.get('exact', float('nan')):.4g} |")
        r = meta["rare"]
        lines += ["", "## Rare event", "",
                  f"P(reach {r['b']:.4f} before {r['a']:.4f} | start {r['x0']:.4f}): full system by AMS "
                  f"({s.ams.n_runs} runs x {s.ams.n_replicas} replicas, kill {s.ams.kill}, dt {s.dt:g}, "
                  f"{ams_full.seconds:.0f} s); surrogate and limit by the exact committor"
                  + (f", and the surrogate by AMS too (dt {s.surrogate_dt:g}, {ams_sur.seconds:.0f} s)." if ams_sur else "."),
                  "", "| full system (AMS) | surrogate (committor) | surrogate (AMS) | exact limit (committor) |",
                  "|---|---|---|---|",
                  f"| {_fmt_ci(r['full'], r['full_stderr'])} | {r['surrogate']:.4g} ± {2 * r['surrogate_spread']:.2g} | "
                  + (f"{_fmt_ci(r['surrogate_ams'], r['surrogate_ams_stderr'])}" if "surrogate_ams" in r else "n/a")
                  + f" | {r.get('exact', float('nan')):.4g} |"]
    if step is not None:
        checks[f"surrogate step dt = {step.dt:g}: stationary mean and variance within 5% (dt vs dt/2, same noise)"] = \
            step.relative_error < 0.05
        lines += ["", "## Step size of surrogate simulations", "",
                  f"The surrogate (ensemble mean) at dt = {step.dt:g} and at dt/2 on the same Brownian path, "
                  f"{step.n_paths} paths from its stationary density, X at t = {step.t_end:g}; the error at dt is "
                  "estimated as twice the change (Euler-Maruyama, weak order 1), ± 2 standard errors of the "
                  "paired differences.", "",
                  "| variable | mean at dt | error of the mean | variance at dt | error of the variance | "
                  "rms path difference |", "|---|---|---|---|---|---|"]
        for i, v in enumerate(step.names):
            lines.append(f"| {v} | {step.mean[i]:.4g} | {step.mean_error[i]:+.2g} ± {2 * step.mean_error_stderr[i]:.1g} "
                         f"| {step.var[i]:.4g} | {step.var_error[i]:+.2g} ± {2 * step.var_error_stderr[i]:.1g} | "
                         f"{step.rms_path_difference[i]:.2g} |")
        lines.append(f"\nLargest relative error {100 * step.relative_error:.2f}%.")
    lines += _lag_rule_lines(getattr(sde, "provenance", {}) or {})
    lines += ["", "## Checks", ""] + [f"- [{'x' if v else ' '}] {k}" for k, v in checks.items()]
    lines += ["", f"multiscale {build_info()['version']}; seed {s.seed}; settings: "
              f"`{json.dumps(asdict(s), default=str)}`", ""]

    ds = xr.Dataset(
        {"density_full": (("bin",), dens.density, {"long_name": "full-system histogram density", "units": "1/state"}),
         "density_full_stderr": (("bin",), dens.stderr, {"units": "1/state"}),
         "hist_counts_full": (("batch", "bin"), dens.counts, {"long_name": "counts per independent batch"}),
         "density_surrogate": (("x",), rho["surrogate"], {"long_name": "surrogate stationary density (quadrature)"}),
         "density_surrogate_members": (("member", "x"), rho_members),
         "drift_surrogate": (("x",), np.asarray(sde.drift(xq[:, None]))[:, 0]),
         "drift_surrogate_spread": (("x",), np.asarray(sde.drift_spread(xq[:, None]))[:, 0]),
         "diffusion_surrogate": (("x",), np.asarray(sde.diffusion(xq[:, None]))[:, 0, 0]),
         "diffusion_surrogate_spread": (("x",), np.asarray(sde.diffusion_spread(xq[:, None]))[:, 0, 0])},
        coords={"x": xq, "bin": dens.centers, "bin_edges": ("bin_edge", dens.edges),
                "kind": list(_KINDS), "comparison": ["modelling", "learning", "total"]},
        attrs={"title": f"multiscale validation of a surrogate of {model}", "model": model,
               "params": json.dumps(p), "eps": float(eps) if eps is not None else float("nan"),
               "settings": json.dumps(asdict(s), default=str), "multiscale_version": build_info()["version"],
               "checks": json.dumps(checks), "metastability": json.dumps(meta, default=float),
               "step_check": json.dumps(None if step is None else {
                   "dt": step.dt, "t_end": step.t_end, "n_paths": step.n_paths, "relative_error": step.relative_error,
                   "mean_error": step.mean_error.tolist(), "mean_error_stderr": step.mean_error_stderr.tolist(),
                   "var_error": step.var_error.tolist(), "var_error_stderr": step.var_error_stderr.tolist()})})
    if limit is not None:
        ds["density_exact"] = (("x",), rho["exact"])
        ds["drift_exact"] = (("x",), limit.drift(xq))
        ds["diffusion_exact"] = (("x",), limit.diffusion(xq))
    dist = np.full((len(_KINDS), 3), np.nan)
    lo_ci, hi_ci = dist.copy(), dist.copy()
    for i, kind in enumerate(_KINDS):
        d = distances[kind]
        for j, c in enumerate(("modelling", "learning", "total")):
            if c not in d:
                continue
            if c == "learning":
                dist[i, j] = d[c][0]
                lo_ci[i, j], hi_ci[i, j] = d[c][0] - 2 * d[c][1], d[c][0] + 2 * d[c][1]
            else:
                dist[i, j], (lo_ci[i, j], hi_ci[i, j]) = d[c].estimate, d[c].ci
    ds["distance"] = (("kind", "comparison"), dist)
    ds["distance_ci_lo"] = (("kind", "comparison"), lo_ci)
    ds["distance_ci_hi"] = (("kind", "comparison"), hi_ci)
    if "mfpt" in meta:
        names = list(meta["mfpt"])
        src = ["full", "surrogate", "exact"]
        ds = ds.assign_coords(direction=names, source=src)
        ds["mfpt"] = (("direction", "source"), [[meta["mfpt"][n].get(k, np.nan) for k in src] for n in names],
                      {"units": "model time"})
        ds["mfpt_uncertainty"] = (("direction", "source"),
                                  [[meta["mfpt"][n]["full_stderr"], meta["mfpt"][n]["surrogate_spread"], 0.0]
                                   for n in names], {"long_name": "stderr (full) / ensemble spread (surrogate)"})
        r = meta["rare"]
        ds["p_rare"] = (("source",), [r["full"], r["surrogate"], r.get("exact", np.nan)])
        ds["p_rare_uncertainty"] = (("source",), [r["full_stderr"], r["surrogate_spread"], 0.0])
        it = meta["implied_timescale"]
        ds["implied_timescale"] = (("source",), [it["full"], it["surrogate"], it.get("exact", np.nan)])
        sc = it["lag_scan"]
        ds = ds.assign_coords(msm_lag=("msm_lag", sc["lag_time"], {"units": "model time"}))
        ds["msm_timescale"] = (("msm_lag",), sc["timescale"], {"long_name": "MSM slowest implied timescale (full system)"})
        ds["msm_timescale_stderr"] = (("msm_lag",), sc["stderr"])
        if ams_full is not None:
            ds["ams_runs_full"] = (("ams_run",), ams_full.runs)
        if ams_sur is not None:
            ds["ams_runs_surrogate"] = (("ams_run_surrogate",), ams_sur.runs)
    return ValidationReport(dataset=ds, markdown="\n".join(lines), checks=checks)


def _figures(report, sde, xq, rho, rho_members, dens, limit, estimates, meta, ams_full, ams_sur, out: Path) -> list[str]:
    """The main figure (validation.png): densities, drift, diffusion, MFPTs, AMS convergence."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return []
    fig, ax = plt.subplots(2, 4, figsize=(17, 7))
    a = ax[0, 0]
    a.bar(dens.centers, dens.density, width=np.diff(dens.edges), color="C0", alpha=0.35, label="full system (histogram)")
    a.errorbar(dens.centers, dens.density, yerr=2 * dens.stderr, fmt="none", ecolor="C0", lw=0.8)
    a.fill_between(xq, rho_members.min(0), rho_members.max(0), color="C3", alpha=0.2, label="surrogate members")
    a.plot(xq, rho["surrogate"], "C3", lw=1.2, label="surrogate (quadrature)")
    if "exact" in rho:
        a.plot(xq, rho["exact"], "k--", lw=1.0, label="exact limit")
    a.set(title="invariant density", xlabel="x", ylabel="density")
    a.legend(fontsize=7)
    for j, (what, key) in enumerate((("drift", "drift"), ("diffusion", "diffusion"))):
        a = ax[0, 1 + j]
        v = report.dataset[f"{key}_surrogate"].values
        sp = report.dataset[f"{key}_surrogate_spread"].values
        a.fill_between(xq, v - 2 * sp, v + 2 * sp, color="C3", alpha=0.25, label="surrogate ± 2 spread")
        a.plot(xq, v, "C3", lw=1.2, label="surrogate")
        if estimates is not None:
            xe = estimates["x"].values[:, 0]
            if key == "drift":
                a.errorbar(xe, estimates["F"].values[:, 0], yerr=2 * estimates["F_stderr"].values[:, 0], fmt="o", ms=2.5,
                           color="C0", lw=0.8, label="HMM estimates ± 2 s.e.")
            else:
                a.errorbar(xe, estimates["A"].values[:, 0, 0], yerr=2 * estimates["A_stderr"].values[:, 0, 0], fmt="o",
                           ms=2.5, color="C0", lw=0.8, label="HMM estimates ± 2 s.e.")
        if limit is not None:
            a.plot(xq, report.dataset[f"{key}_exact"].values, "k--", lw=1.0, label="exact limit")
        a.set(title=f"{what} F(x)" if key == "drift" else "diffusion A(x)", xlabel="x")
        a.legend(fontsize=7)
    a = ax[1, 0]
    if "mfpt" in meta:
        names = list(meta["mfpt"])
        for i, n in enumerate(names):
            r = meta["mfpt"][n]
            a.errorbar([i - 0.2], [r["full"]], yerr=[1.96 * r["full_stderr"]], fmt="s", color="C0",
                       label="full system" if i == 0 else None)
            a.errorbar([i], [r["surrogate"]], yerr=[2 * r["surrogate_spread"]], fmt="o", color="C3",
                       label="surrogate" if i == 0 else None)
            if "exact" in r:
                a.plot([i + 0.2], [r["exact"]], "k*", ms=9, label="exact limit" if i == 0 else None)
        a.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
        a.set(title="mean first passage times (95% / ± 2 spread)", ylabel="time")
        a.legend(fontsize=7)
        a = ax[1, 1]
        rates = [[1 / meta["mfpt"][n][k] for n in names] for k in ("full", "surrogate")]
        w = 0.35
        a.bar(np.arange(len(names)) - w / 2, rates[0], w, color="C0", alpha=0.6, label="full system")
        a.bar(np.arange(len(names)) + w / 2, rates[1], w, color="C3", alpha=0.6, label="surrogate")
        a.set_xticks(range(len(names)), [n.replace("_", " ") for n in names])
        a.set(title="transition rates 1/MFPT", ylabel="rate")
        a.legend(fontsize=7)
        a = ax[1, 2]
        r = meta["rare"]
        for res, color, label in ((ams_full, "C0", "AMS full system"), (ams_sur, "C3", "AMS surrogate")):
            if res is None:
                continue
            c, se = res.running_estimate()
            n = np.arange(1, c.size + 1)
            a.plot(n, c, color=color, label=label)
            a.fill_between(n, c - 1.96 * se, c + 1.96 * se, color=color, alpha=0.2)
        a.axhline(r["surrogate"], color="C3", ls=":", label="surrogate committor")
        if "exact" in r:
            a.axhline(r["exact"], color="k", ls="--", label="exact committor")
        a.set(title="P(B before A): running AMS estimate", xlabel="independent runs", ylabel="probability")
        a.legend(fontsize=7)
        a = ax[0, 3]
        it = meta["implied_timescale"]
        sc = it["lag_scan"]
        a.errorbar(sc["lag_time"], sc["timescale"], yerr=1.96 * np.asarray(sc["stderr"]), fmt="s-", color="C0",
                   ms=4, label="full system (MSM)")
        a.axhline(it["surrogate"], color="C3", label="surrogate (spectral gap)")
        a.axhspan(it["surrogate"] - 2 * it["surrogate_spread"], it["surrogate"] + 2 * it["surrogate_spread"],
                  color="C3", alpha=0.2)
        if "exact" in it:
            a.axhline(it["exact"], color="k", ls="--", label="exact limit (spectral gap)")
        a.set(title="slowest implied timescale vs MSM lag", xlabel="lag time", ylabel="timescale")
        a.legend(fontsize=7)
        a = ax[1, 3]
        x = report.dataset["x"].values
        for key, color, label in (("surrogate", "C3", "surrogate"), ("exact", "k", "exact limit")):
            if f"density_{key}" in report.dataset:
                r = report.dataset[f"density_{key}"].values
                U = -np.log(np.maximum(r, 1e-300))
                a.plot(x, U - U.min(), color=color, ls="-" if key == "surrogate" else "--", label=label)
        for w in meta["wells"]:
            a.axvline(w, color="0.5", ls=":", lw=0.8)
        a.set(title="effective potential -log density (wells dotted)", xlabel="x", ylim=(-0.3, 8))
        a.legend(fontsize=7)
    else:
        for a in (ax[1, 1], ax[1, 2], ax[0, 3], ax[1, 3]):
            a.axis("off")
    fig.tight_layout()
    path = out / "validation.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [str(path)]


def _lag_rule_lines(prov: Mapping[str, Any]) -> list[str]:
    """The report's account of a trajectory fit's lag: the ladder per lag and region, the choice."""
    rule = prov.get("lag_rule")
    if prov.get("pathway") != "trajectories" or not isinstance(rule, Mapping):
        return []
    lines = ["", "## Transition lag of the trajectory fit", "",
             f"Lag {prov.get('lag', float('nan')):.4g} (sampling interval {prov.get('dt', float('nan')):.4g}); "
             f"the rule's choice {rule['chosen_lag']:.4g}: {rule['reason']}."
             + (f" Fast-scale knee at lag {rule['knee_lag']:.4g}." if rule.get("knee_lag") else "")
             + (f" The slow dynamics' curvature bends the rate from lag {rule['curvature_lag']:.4g}."
                if rule.get("curvature_lag") else ""), "",
             "Differenced rate d = (v(2 lag) - v(lag)) / lag of the locally de-trended increments (first "
             "variable), overall and per region of the state space:", ""]
    edges = rule["region_edges"]
    regions = [f"[{a:.3g}, {b:.3g}]" for a, b in zip(edges[:-1], edges[1:])]
    lines += ["| lag | d ± stderr | change to 2 lag | " + " | ".join(regions) + " |",
              "|---" * (3 + len(regions)) + "|"]
    ch = rule["change"] + [None]
    for i, lag in enumerate(rule["differenced_lag"]):
        c = "" if ch[i] is None else f"{100 * ch[i][0]:+.1f}%"
        per = " | ".join(f"{r[i][0]:.4g}" for r in rule["region_differenced_rate"])
        lines.append(f"| {lag:.4g} | {rule['differenced_rate'][i][0]:.4g} ± {rule['differenced_rate_se'][i][0]:.2g} "
                     f"| {c} | {per} |")
    return lines
