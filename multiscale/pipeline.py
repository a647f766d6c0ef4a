"""The main job: ``multiscale run``.

Runs the whole pipeline on the built-in default problem, reference problem 2 (a slow variable
whose bistability is created by a fast tilted double well), or on another catalogue model with
one slow variable and a known exact limit, and writes everything to one folder (several slow
variables, two-scale Lorenz-96 for one, run the stages of :mod:`multiscale._ring_pipeline`):

1. simulate the full fast/slow system (coarse trajectories, in-kernel statistics);
2. estimate the averaged drift F(x) and diffusion A(x) on a grid with the frozen-x micro-solver
   (heterogeneous multiscale method), with standard errors, against the exact limit;
3. learn the effective SDE with a deep ensemble of neural networks from those estimates and save
   it (``surrogate.h5``);
4. validate it against the full system and the exact limit (invariant density, mean first
   passage times, rates, implied timescale, a rare event by AMS), keeping the modelling,
   learning and total errors apart: ``report.md``, ``validation.nc``, ``validation.png``;
5. export it in the portable format (``surrogate.mss``) and read it back through the C API
   library, as downstream C/C++/Fortran solvers will;

with a summary (``summary.json``, ``summary.txt``). The exit code is 0 when every check passes.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .averaging import AveragingEstimator, AveragingOptions
from .io import save_dataset
from .models import get_model
from .simulate import Observables, simulate

DEFAULT_MODEL = "tilted_double_well"


@dataclass(frozen=True)
class RunConfig:
    """Settings of ``multiscale run`` (a TOML file's ``[run]`` table has the same keys).

    Attributes
    ----------
    model : str
        Catalogue model with one slow variable (its exact limit is used where one is known).
    params : dict
        Parameter overrides.
    eps, dt : float
        Scale separation and time step of the full system.
    n_paths, t_end : int, float
        Stage-1 simulation size.
    grid : (float, float, int)
        Slow points of the averaging estimates: lo, hi, count. It is also the surrogate's domain,
        so it should cover where the invariant density lives.
    averaging : AveragingOptions
    members, epochs : int
        Deep-ensemble size and maximum Adam epochs of the surrogate.
    hidden : tuple of int or None
        Hidden layer widths of the surrogate's networks (None: ``SurrogateOptions``' default).
    quick : bool
        Small validation runs (CI and tests): the same code paths, wider intervals.
    seed : int
    threads : int or None
    stencil : int
        A ring of slow variables (one vector variable ``X[k]``): the half-width of the local,
        weight-shared closure (:class:`multiscale.surrogate.RingClosure`). Several scalar slow
        variables get a full ``m``-variable :class:`multiscale.EffectiveSDE` instead.
    resolved : dict or None
        Several slow variables: the resolved tendency ``R`` of the hybrid closure, model-language
        expressions for the slow vector variable (``{"X[k]": "..."}``, in the model's own
        parameters); None takes the built-in one of a catalogue model (Lorenz-96: its slow
        drift without the coupling to ``Y``), or ``R = 0`` (the closure learns the whole drift).
    sample_every, spin_up : float
        Several slow variables: the coarse trajectories' sampling interval and the discarded
        start of every path (model time).
    hmm_points : int
        Several slow variables: slow states, taken from the full system's own trajectories, at
        which the frozen-X micro-solver estimates the averaged drift (a grid is impossible).
    """

    model: str = DEFAULT_MODEL
    params: Mapping[str, float] = field(default_factory=dict)
    eps: float = 0.03
    dt: float = 2.5e-4
    n_paths: int = 200
    t_end: float = 50.0
    grid: tuple[float, float, int] = (-7.5, 7.5, 61)
    averaging: AveragingOptions = AveragingOptions(dt=5e-3, burn_in=5.0, time=1500.0, replicas=8, batch=10.0)
    members: int = 10
    epochs: int = 1500
    hidden: tuple[int, ...] | None = None
    quick: bool = False
    seed: int = 0
    threads: int | None = None
    stencil: int = 2
    resolved: Mapping[str, str] | None = None
    sample_every: float = 0.005
    spin_up: float = 5.0
    hmm_points: int = 64

    @classmethod
    def quick_config(cls, **kw: Any) -> "RunConfig":
        """Reduced sizes for tests and CI: every stage runs, with wider error bars."""
        base = dict(quick=True, n_paths=100, t_end=20.0, eps=0.05, dt=5e-4, grid=(-7.5, 7.5, 41),
                    averaging=AveragingOptions(dt=5e-3, burn_in=5.0, time=600.0, replicas=8, batch=10.0),
                    members=5, epochs=800)
        base.update(kw)
        return cls(**base)

    @classmethod
    def ring_config(cls, quick: bool = False, **kw: Any) -> "RunConfig":
        """Defaults for several slow variables (two-scale Lorenz-96 with K = 8, J = 32, c = 10):
        the full system at dt = 2e-4 (it has no eps), 32 paths of 100 time units sampled every
        0.005, frozen-X estimates at 64 of their states (16 time units per replica: the frozen fast
        dynamics decorrelate over about 0.4), a 10-member local closure of stencil 3 (the fast
        ring couples neighbouring sectors, and stencil 2 leaves a 1% bias in the mean and 0.05 in
        the autocorrelation) with hidden layers (16, 16) (the per-step cost of the surrogate grows with their square) trained for 4000
        Adam steps of 2048 site rows (1500 leave it visibly short); ``quick``: 16 paths
        of 50 time units, 24 estimate points, 4 members, 1500 steps and the quick validation (CI)."""
        base: dict[str, Any] = dict(model="lorenz96", dt=2e-4, n_paths=32, t_end=100.0, members=10, epochs=4000,
                                    hidden=(16, 16), stencil=3,
                                    hmm_points=64,
                                    averaging=AveragingOptions(dt=2.5e-4, burn_in=1.0, time=16.0, replicas=4, batch=2.0))
        if quick:
            base.update(quick=True, n_paths=16, t_end=50.0, members=4, epochs=1500, hmm_points=24,
                        averaging=AveragingOptions(dt=2.5e-4, burn_in=1.0, time=12.0, replicas=4, batch=1.5))
        base.update({k: v for k, v in kw.items() if k != "quick"})
        return cls(**base)

    @classmethod
    def for_model(cls, model: Any, quick: bool = False, **kw: Any) -> "RunConfig":
        """The defaults that suit ``model``: :meth:`ring_config` for several slow variables,
        else the one-variable defaults (``quick``: :meth:`quick_config`)."""
        info = get_model(model)
        if info.dims(info.resolve_params(kw.get("params") or {}))[0] > 1:
            return cls.ring_config(quick=quick, model=model, **kw)
        return (cls.quick_config if quick else cls)(model=model, **kw)

    @classmethod
    def from_toml(cls, path: str | Path, **overrides: Any) -> "RunConfig":
        """Read a ``[run]`` table (``[run.averaging]`` for the averaging options); unknown keys
        raise ``ValueError`` naming their path. ``quick = true`` starts from :meth:`quick_config`;
        keyword overrides that are not None win over the file."""
        table = cls.toml_table(path)
        table.update({k: v for k, v in overrides.items() if v is not None})
        quick = bool(table.pop("quick", False))
        return cls.for_model(table.pop("model", DEFAULT_MODEL), quick=quick, **table)

    @classmethod
    def toml_table(cls, path: str | Path) -> dict:
        """The checked keyword arguments of a TOML file's ``[run]`` table."""
        from ._toml import read_toml

        doc = read_toml(path, "config file")
        extra = set(doc) - {"run"}
        if extra:
            raise ValueError(f"config {str(path)!r}: unknown table(s) {sorted(extra)}; expected [run]")
        table = dict(doc.get("run", {}))
        known = {f.name for f in fields(cls)}
        for k in table:
            if k not in known:
                raise ValueError(f"config {str(path)!r}: unknown key run.{k}; expected one of {sorted(known)}")
        if "averaging" in table:
            av = table.pop("averaging")
            if not isinstance(av, dict):
                raise ValueError("run.averaging must be a table")
            ak = {f.name for f in fields(AveragingOptions)}
            for k in av:
                if k not in ak:
                    raise ValueError(f"config {str(path)!r}: unknown key run.averaging.{k}; expected one of {sorted(ak)}")
            table["averaging"] = replace(RunConfig.averaging, **av)
        if "hidden" in table:
            table["hidden"] = tuple(int(v) for v in table["hidden"])
        if "grid" in table:
            g = table["grid"]
            if not (isinstance(g, list) and len(g) == 3):
                raise ValueError(f"run.grid={g!r} must be [lo, hi, count]")
            table["grid"] = (float(g[0]), float(g[1]), int(g[2]))
        return table


def _config_json(c: RunConfig) -> dict:
    """The config as JSON; a user model as its definition (a Model does not deep-copy)."""
    out = {}
    for f in fields(c):
        v = getattr(c, f.name)
        out[f.name] = v.to_dict() if hasattr(v, "to_dict") and hasattr(v, "source_hash") else v
    return json.loads(json.dumps(out, default=str))


def run_pipeline(out: Path, config: RunConfig = RunConfig(), progress: bool = True) -> int:
    """Run the pipeline; returns a process exit code (0: every check passed)."""
    from .surrogate import EffectiveSDEEstimator, SurrogateOptions, save_surrogate
    from .validate import ValidationSettings, exact_limit, validate

    c = config
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    info = get_model(c.model)
    p = info.resolve_params(c.params)
    if info.dims(p)[0] != 1:
        from ._ring_pipeline import run_ring_pipeline

        return run_ring_pipeline(out, c, progress)
    eps = c.eps if info.uses_eps else None
    limit = exact_limit(info, p)
    say = (lambda m: print(m, flush=True)) if progress else (lambda m: None)
    t_all = time.perf_counter()
    stages: dict[str, float] = {}
    checks: dict[str, bool] = {}

    # Stage 1: the full system.
    say(f"[1/5] simulate {info.name} (eps={eps}, dt={c.dt}, {c.n_paths} paths, T={c.t_end})")
    t0 = time.perf_counter()
    every = max(1, int(round(0.1 / c.dt)))
    steps = int(round(c.t_end / c.dt))
    every = every if steps % every == 0 else 1
    ds = simulate(info, params=p, eps=eps, dt=c.dt, t_end=c.t_end, n_paths=c.n_paths, seed=c.seed,
                  save_every=every, save_fast=False, observables=Observables(("x",), start=c.t_end / 2),
                  threads=c.threads)
    save_dataset(ds, out / "simulation.nc")
    stages["simulate"] = time.perf_counter() - t0
    path_steps = c.n_paths * steps / stages["simulate"]

    # Stage 2: averaged drift and diffusion (HMM, frozen-x micro-solver).
    lo, hi, n = c.grid
    grid = np.linspace(lo, hi, int(n))
    say(f"[2/5] averaged drift and diffusion on {grid.size} points in [{lo}, {hi}]")
    t0 = time.perf_counter()
    est = AveragingEstimator(c.averaging, seed=c.seed, threads=c.threads).fit(info, grid, params=p)
    avg = est.result_
    save_dataset(avg, out / "averaged.nc")
    stages["average"] = time.perf_counter() - t0
    F, F_se = avg["F"].values[:, 0], avg["F_stderr"].values[:, 0]
    A = avg["A"].values[:, 0, 0]
    est_summary: dict[str, Any] = {"max_F_stderr": float(F_se.max())}
    if limit is not None:
        z = (F - limit.drift(grid)) / F_se
        est_summary.update(rms_z_F=float(np.sqrt(np.mean(z**2))), max_abs_z_F=float(np.max(np.abs(z))),
                           max_abs_A_error=float(np.max(np.abs(A - limit.diffusion(grid)))))
        # rms z near 1 when the error bars are honest; the fast Euler step's O(dt) bias adds to it
        checks["averaged drift: rms z against the exact limit < 2"] = est_summary["rms_z_F"] < 2.0

    # Stage 3: the neural effective SDE.
    say(f"[3/5] learn the effective SDE ({c.members}-member deep ensemble)")
    t0 = time.perf_counter()
    hidden = {} if c.hidden is None else {"hidden": c.hidden}
    learner = EffectiveSDEEstimator(SurrogateOptions(members=c.members, epochs=c.epochs, seed=c.seed,
                                                     threads=c.threads, **hidden)).fit(avg)
    sde = learner.fetch_model()
    save_surrogate(sde, out / "surrogate.h5")
    stages["train"] = time.perf_counter() - t0
    sur_summary: dict[str, Any] = {"members": sde.members, "train_seconds": stages["train"]}
    if limit is not None:
        xt = np.linspace(grid[1], grid[-2], 201)
        err = sde.drift(xt[:, None])[:, 0] - limit.drift(xt)
        inside = float(np.mean(np.abs(err) <= 2 * sde.drift_spread(xt[:, None])[:, 0] + 2 * np.interp(xt, grid, F_se)))
        sur_summary.update(max_abs_drift_error=float(np.max(np.abs(err))), fraction_inside_band=inside)
        checks["learned drift: exact limit inside the ensemble band (+ data error) at >= 90% of points"] = inside >= 0.9

    # Stage 4: validation.
    say("[4/5] validate against the full system and the exact limit")
    t0 = time.perf_counter()
    vs = (ValidationSettings.quick if c.quick else ValidationSettings)(seed=c.seed, threads=c.threads, eps=eps,
                                                                       dt=c.dt)
    rep = validate(sde, info, params=p, settings=vs, estimates=avg, out=out, progress=progress)
    stages["validate"] = time.perf_counter() - t0
    checks.update(rep.checks)

    # Stage 5: export.
    say("[5/5] export (surrogate.mss) and read back through the C API")
    t0 = time.perf_counter()
    export_check = _export(sde, out / "surrogate.mss", grid)
    stages["export"] = time.perf_counter() - t0
    if export_check is not None:
        checks["C API evaluation equals Python (< 1e-12 relative)"] = export_check < 1e-12

    total = time.perf_counter() - t_all
    summary = {"model": info.name, "params": p, "eps": eps, "dt": c.dt, "seed": c.seed, "quick": c.quick,
               "seconds": total, "stage_seconds": stages, "path_steps_per_second": path_steps,
               "estimates": est_summary, "surrogate": sur_summary, "c_api_max_relative_difference": export_check,
               "checks": checks, "all_checks_passed": all(checks.values()),
               "config": _config_json(c)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    lines = [f"multiscale run: {info.name} ({', '.join(f'{k}={v:g}' for k, v in p.items())}), eps={eps}, "
             f"{total:.0f} s on {c.threads or 'all'} threads "
             f"({', '.join(f'{k} {v:.0f} s' for k, v in stages.items())})"]
    if limit is not None:
        lines.append(f"averaged drift on {grid.size} points: rms z = {est_summary['rms_z_F']:.2f} against the exact "
                     f"limit, max stderr {est_summary['max_F_stderr']:.3g}, max |A - A_exact| = "
                     f"{est_summary['max_abs_A_error']:.3g}")
        lines.append(f"neural effective SDE ({sde.members} members): max |b - F| = "
                     f"{sur_summary['max_abs_drift_error']:.3g}, exact F inside the band at "
                     f"{100 * sur_summary['fraction_inside_band']:.0f}% of points")
    lines.append("")
    lines += [ln for ln in rep.markdown.splitlines() if ln.startswith("|") and "---" not in ln][:9]
    lines.append("")
    lines.append("checks:")
    lines += [f"  [{'x' if v else ' '}] {k}" for k, v in checks.items()]
    lines.append(f"outputs in {out}/: report.md, validation.png, validation.nc, simulation.nc, averaged.nc, "
                 "surrogate.h5, surrogate.mss, summary.json, summary.txt")
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if summary["all_checks_passed"] else 1


def _export(sde, path: Path, grid: np.ndarray) -> float | None:
    """Write the portable file and evaluate it through the C API library, as C/C++/Fortran
    programs will; returns the largest difference from the Python model relative to the
    drift's scale (None when the library is not built, as in a bare source checkout)."""
    return _export_check(sde, path, np.linspace(grid[0], grid[-1], 301)[:, None])


def _export_check(sde, path: Path, x: np.ndarray) -> float | None:
    """Write the portable file and compare the C API's evaluation at ``x (n, m)`` with Python
    (:func:`multiscale.export.check_export`); None when the library is not built."""
    from .export import check_export, export_surrogate, get_library

    export_surrogate(sde, path)
    try:
        get_library()
    except FileNotFoundError:
        return None
    return check_export(sde, path, x)


def _pyplot():
    """matplotlib.pyplot with a file backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return None
    return plt
