"""The main job for several slow variables (``multiscale run --model lorenz96``).

Two-scale Lorenz-96 is the test bed of closure learning: ``K`` slow variables ``X_k`` on a ring,
each driving ``J`` fast ones. The job learns a hybrid effective SDE
``dX = [R(X) + U(X)] dt + S(X) dW`` (the resolved tendency ``R`` given, the closure ``U``, ``S``
a local weight-shared deep ensemble) and puts it beside the coupled system and the closures
practitioners use, in five stages written to one folder:

1. simulate the coupled system: coarse trajectories of the slow variables after a spin-up;
2. estimate the averaged drift with the frozen-X micro-solver at slow states drawn from those
   trajectories (a tensor grid is impossible in ``K`` dimensions), with standard errors;
3. learn the closure from the trajectories (every site of every snapshot a sample), a second
   one from the scattered estimates, and fit the cubic (Arnold et al. 2013) and cubic + AR(1)
   (Wilks 2005) baselines to the same data;
4. validate them against the coupled system (no exact limit exists for Lorenz-96: the coupled
   system is the reference) and time the learned surrogate's simulation against the coupled
   system's on the same threads;
5. export the surrogate (``surrogate.mss``) and read it back through the C API library;

with ``summary.json`` / ``summary.txt``; the exit code is 0 when every check passes.

A model whose slow states are several scalar variables (not one vector variable on a ring) gets
a full ``m``-variable :class:`multiscale.EffectiveSDE` from the same two data pathways instead
of the local closure, and no polynomial baselines (they pool exchangeable sites).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .simulate import Precision

#: Resolved tendencies of catalogue models with a ring of slow variables: the slow drift
#: without the coupling to the fast variables.
BUILTIN_RESOLVED: dict[str, dict[str, str]] = {
    "lorenz96": {"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"},
}

#: The learned surrogate should run at least this many times the coupled system's physical time
#: per second, on the same threads (reported in the summary beside the measured ratio).
MIN_SPEEDUP = 20.0

#: The learned surrogate's simulation, validated and timed as run: the kernel's single-precision
#: throughput mode (weather and climate models run in single precision too; the statistics are
#: checked in it).
PRECISION = Precision.FLOAT32


def is_ring(info: Any) -> bool:
    """Whether the model's slow states are one vector variable (a ring of sites, ``X[k]``): a
    local closure then applies; several scalar slow variables get a full effective SDE."""
    full = getattr(info, "model", None)
    return full is not None and len(full.slow) == 1 and "[" in next(iter(full.slow))


def resolved_model(info: Any, params: Mapping[str, float], resolved: Mapping[str, str] | None) -> Any:
    """The resolved part ``R`` as a slow-only :class:`multiscale.Model` (or None: ``R = 0``).

    ``resolved`` holds model-language expressions for the full model's slow vector variable, in
    its parameters; None takes :data:`BUILTIN_RESOLVED` for a catalogue model that has one.
    """
    from .models import Model

    full = getattr(info, "model", None)
    if resolved is None:
        resolved = BUILTIN_RESOLVED.get(info.name)
    if resolved is None:
        return None
    if full is None:
        raise ValueError(f"model {info.name!r} is not written in the model language; resolved= needs its sizes")
    var = {k.split("[")[0] for k in resolved}
    if len(var) != 1:
        raise ValueError(f"resolved={dict(resolved)!r} must define one slow vector variable")
    name = var.pop()
    if name not in full.sizes:
        raise ValueError(f"resolved={dict(resolved)!r}: {name!r} is not a vector variable of model {info.name!r} "
                         f"(its sizes: {dict(full.sizes)})")
    return Model(f"{info.name}_resolved", slow=dict(resolved), slow_noise={name: "0"},
                 sizes={name: full.sizes[name]}, params=dict(params), scaling="none",
                 description=f"resolved tendency of {info.name}")


def measure_speed(info: Any, params: Mapping[str, float], eps: float | None, dt: float, sde: Any, h: float,
                  states: np.ndarray, *, seed: int = 0, threads: int | None = None, t_end: float = 10.0,
                  repeats: int = 3) -> dict[str, Any]:
    """Physical time simulated per second of wall time by the coupled system and by the
    surrogate, on the same threads, in ``repeats`` interleaved rounds (the machine's other load
    hits both sides of the ratio alike); the medians and their ratio.

    Each runs at its own throughput size: the coupled system 16 paths from the attractor
    ``states (P, n_slow + n_fast)`` (its kernel runs a path per thread), the surrogate
    ``members x 32`` paths (one member per block of SIMD lanes) from their slow parts, at its
    step ``h`` in :data:`PRECISION`.
    """
    from .simulate import simulate
    from .validate._ring_report import _run_surrogate

    m = sde.dim
    pick = np.arange(16) % states.shape[0]
    xs, ys = states[pick, :m], states[pick, m:]
    xsur = states[np.arange(sde.members * 32) % states.shape[0], :m]
    n_save = int(round(t_end / h))
    coupled, surrogate = [], []
    for r in range(repeats):
        t0 = time.perf_counter()
        simulate(info, params=params, eps=eps, dt=dt, t_end=t_end, n_paths=xs.shape[0], seed=seed + 50 + r, x0=xs,
                 y0=ys if ys.size else None, save_every=int(round(t_end / dt)), save_fast=False, threads=threads)
        coupled.append(xs.shape[0] * t_end / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        _run_surrogate(sde, t_end=t_end, dt=h, x0=xsur, seed=seed + 60 + r, member="sample", save_every=n_save,
                       threads=threads, precision=PRECISION)
        surrogate.append(xsur.shape[0] * t_end / (time.perf_counter() - t0))
    cr, sr = float(np.median(coupled)), float(np.median(surrogate))
    return {"coupled_time_units_per_second": cr, "surrogate_time_units_per_second": sr, "speedup": sr / cr,
            "speedup_per_round": [s / c for s, c in zip(surrogate, coupled)], "repeats": repeats,
            "coupled_paths": int(xs.shape[0]), "surrogate_paths": int(xsur.shape[0]), "surrogate_dt": h,
            "coupled_dt": dt, "precision": PRECISION.value, "threads": threads}


def run_ring_pipeline(out: Path, c: Any, progress: bool = True) -> int:
    """The pipeline for several slow variables; returns a process exit code (0: every check passed)."""
    from .averaging import AveragingEstimator
    from .io import save_dataset
    from .models import get_model
    from .pipeline import _config_json
    from .simulate import simulate
    from .surrogate import EffectiveSDEEstimator, SurrogateOptions, save_surrogate
    from .surrogate._baselines import PolynomialClosure
    from .surrogate._local import LocalClosureEstimator, RingClosure
    from .validate._ring_report import independent_starts

    info = get_model(c.model)
    p = info.resolve_params(c.params)
    m = info.dims(p)[0]
    ring = is_ring(info)
    if ring and 2 * c.stencil + 1 > m:
        raise ValueError(f"stencil={c.stencil} needs at least {2 * c.stencil + 1} slow variables; "
                         f"model {info.name!r} has {m}")
    if not ring and c.resolved is not None:
        raise ValueError(f"resolved={dict(c.resolved)!r} needs a ring of slow variables (one vector variable); "
                         f"model {info.name!r} has the slow states {info.state_names(p)[0]}")
    h = float(c.sample_every)
    every = int(round(h / c.dt))
    if every < 1 or abs(every * c.dt - h) > 1e-9 * h:
        raise ValueError(f"sample_every={h!r} must be a multiple of dt={c.dt!r}")
    res = resolved_model(info, p, c.resolved) if ring else None
    eps = c.eps if info.uses_eps else None
    say = (lambda s: print(s, flush=True)) if progress else (lambda s: None)
    out.mkdir(parents=True, exist_ok=True)
    t_all = time.perf_counter()
    stages: dict[str, float] = {}
    checks: dict[str, bool] = {}

    # Stage 1: the coupled system.
    T = c.spin_up + c.t_end
    say(f"[1/5] simulate {info.name} ({m} slow variables; dt={c.dt}, {c.n_paths} paths, T={T:g}, "
        f"sampled every {h:g})")
    t0 = time.perf_counter()
    x0, y0 = independent_starts(info, p, c.n_paths, c.seed)
    ds = simulate(info, params=p, eps=eps, dt=c.dt, t_end=T, n_paths=c.n_paths, seed=c.seed, save_every=every,
                  save_fast=False, threads=c.threads, x0=x0, y0=y0)
    stages["simulate"] = time.perf_counter() - t0
    ds = ds.isel(time=slice(int(round(c.spin_up / h)), None))
    save_dataset(ds, out / "simulation.nc")
    slow = json.loads(ds.attrs["slow_states_json"])
    X = ds["trajectory"].sel(state=slow).transpose("realization", "time", "state").values

    # Stage 2: averaged drift at slow states from the coupled system's own trajectories.
    say(f"[2/5] averaged drift at {c.hmm_points} slow states drawn from the coupled system's trajectories")
    t0 = time.perf_counter()
    rng = np.random.default_rng([c.seed, 18])
    snaps = X.reshape(-1, m)
    pts = snaps[np.sort(rng.choice(snaps.shape[0], size=min(c.hmm_points, snaps.shape[0]), replace=False))]
    avg = AveragingEstimator(c.averaging, seed=c.seed, threads=c.threads).fit(info, pts, params=p).result_
    save_dataset(avg, out / "averaged.nc")
    stages["average"] = time.perf_counter() - t0
    conv = avg["converged"].values.astype(bool)

    # Stage 3: the closure from trajectories and from estimates; the baselines.
    t0 = time.perf_counter()
    # One torch thread per member group, as many groups at once as the threads (the model does
    # not depend on it).
    opts = SurrogateOptions(members=c.members, epochs=c.epochs, hidden=c.hidden, seed=c.seed, threads=1,
                            workers=c.threads or 2)
    if ring:
        say(f"[3/5] learn the local closure (stencil {c.stencil}, {c.members}-member deep ensemble) and the "
            "baselines")
        structure = RingClosure(stencil=c.stencil, resolved=res, params=p)
        fit = lambda data: LocalClosureEstimator(opts, structure).fit(data)  # noqa: E731
    else:
        say(f"[3/5] learn the effective SDE of the {m} slow variables ({c.members}-member deep ensemble)")
        fit = lambda data: EffectiveSDEEstimator(opts).fit(data)  # noqa: E731
    learner = fit(ds)
    sde = learner.fetch_model()
    save_surrogate(sde, out / "surrogate.h5")
    train_seconds = time.perf_counter() - t0
    baselines: dict[str, Any] = {}
    if ring:  # the closures practitioners use, fitted to the same data
        baselines["cubic (Arnold et al. 2013)"] = PolynomialClosure.fit(X, h, res, p, noise=False)
        baselines["cubic + AR(1) (Wilks 2005)"] = wilks = PolynomialClosure.fit(X, h, res, p, noise=True)
    est_summary: dict[str, Any] = {"points": int(pts.shape[0]), "converged": int(conv.sum()),
                                   "max_F_stderr": float(np.nanmax(avg["F_stderr"].values[conv])) if conv.any()
                                   else None}
    if conv.sum() >= 4:
        from_estimates = fit(avg).fetch_model()
        save_surrogate(from_estimates, out / "surrogate_from_estimates.h5")
        baselines["learned from frozen-X estimates"] = from_estimates
        # The two data pathways side by side at the converged points: the closure F - R (ring)
        # or the drift F.
        xc = pts[conv]
        members = sde.members_unresolved(xc) if ring else sde.members_drift(xc)
        U_hmm = avg["F"].values[conv] - (sde.resolved_drift(xc) if ring else 0.0)
        U_se = avg["F_stderr"].values[conv]
        U_traj = members.mean(0)
        z = (U_traj - U_hmm) / np.sqrt(U_se**2 + members.std(0, ddof=1) ** 2)
        est_summary.update(closure_rms=float(np.sqrt(np.mean(U_hmm**2))),
                           rms_difference_trajectories_vs_estimates=float(np.sqrt(np.mean((U_traj - U_hmm) ** 2))),
                           rms_z=float(np.sqrt(np.mean(z**2))))
    stages["train"] = time.perf_counter() - t0
    s = learner.summary_
    sur_summary: dict[str, Any] = {"kind": "local ring closure" if ring else f"{m}-variable effective SDE",
                                   "members": sde.members, "hidden": list(c.hidden), "train_seconds": train_seconds,
                                   "method": s.get("method"), "lag": s.get("lag"),
                                   "samples": s.get("site_samples", s.get("n_pairs"))}
    if ring:
        sur_summary.update(stencil=c.stencil, method_reason=(s.get("lag_rule") or {}).get("method_reason"),
                           cubic_coefficients=baselines["cubic (Arnold et al. 2013)"].coefficients.tolist(),
                           ar1={"phi": wilks.phi, "sigma_e": wilks.sigma_e})

    # Stage 4: validation against the coupled system, and the surrogate's speed.
    say("[4/5] validate against an independent run of the coupled system (the reference: no exact limit is "
        "known for it) and time the surrogate")
    t0 = time.perf_counter()
    from .validate import RingValidationSettings, validate

    # An independent run of the coupled system is the reference (another seed, other starts).
    # Statistics every 0.05 time units or the nearest multiple of the sampling interval.
    vs = (RingValidationSettings.quick if c.quick else RingValidationSettings)(
        seed=c.seed + 1, threads=c.threads, eps=eps, dt=c.dt, surrogate_dt=h, precision=PRECISION,
        sample_every=max(1, round(0.05 / h)) * h)
    rep = validate(sde, info, params=p, settings=vs, baselines=baselines, out=out, progress=progress)
    checks.update(rep.checks)
    # A figure, not a pass/fail check: wall-clock ratios depend on the machine and its other load
    # (benchmarks/bench_ring.py measures it properly).
    speed = measure_speed(info, p, eps, c.dt, sde, h, ds["final_state"].values, seed=c.seed, threads=c.threads)
    speed.update(target=MIN_SPEEDUP, target_met=bool(speed["speedup"] >= MIN_SPEEDUP))
    stages["validate"] = time.perf_counter() - t0

    # Stage 5: export.
    say("[5/5] export (surrogate.mss) and read back through the C API")
    t0 = time.perf_counter()
    from .pipeline import _export_check

    export_check = _export_check(sde, out / "surrogate.mss", X[:, ::97].reshape(-1, m)[:256])
    stages["export"] = time.perf_counter() - t0
    if export_check is not None:
        checks["C API evaluation equals Python (< 1e-12 relative)"] = export_check < 1e-12

    total = time.perf_counter() - t_all
    summary = {"model": info.name, "params": p, "slow_variables": m, "dt": c.dt, "seed": c.seed, "quick": c.quick,
               "seconds": total, "stage_seconds": stages, "estimates": est_summary, "surrogate": sur_summary,
               "speed": speed, "c_api_max_relative_difference": export_check, "checks": checks,
               "all_checks_passed": all(checks.values()), "config": _config_json(c)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    lines = [f"multiscale run: {info.name} ({', '.join(f'{k}={v:g}' for k, v in p.items())}), {m} slow variables, "
             f"{total:.0f} s on {c.threads or 'all'} threads ({', '.join(f'{k} {v:.0f} s' for k, v in stages.items())})",
             f"frozen-X estimates: {est_summary['converged']} of {est_summary['points']} points converged",
             f"{sur_summary['kind']}: {sde.members} members, hidden {tuple(c.hidden)}, {sur_summary['method']} at "
             f"lag {sur_summary['lag']:g} from {sur_summary['samples']} samples, {train_seconds:.0f} s",
             f"speed (median of {speed['repeats']} interleaved runs on {c.threads or 'all'} threads): surrogate "
             f"{speed['surrogate_time_units_per_second']:.3g} time units/s ({PRECISION.value}), coupled "
             f"{speed['coupled_time_units_per_second']:.3g} time units/s: {speed['speedup']:.1f}x (target "
             f"{MIN_SPEEDUP:g}x: {'met' if speed['target_met'] else 'NOT met'})", ""]
    lines += [ln for ln in rep.markdown.splitlines() if ln.startswith("|") and "---" not in ln][:8]
    lines += ["", "checks:"] + [f"  [{'x' if v else ' '}] {k}" for k, v in checks.items()]
    lines.append(f"outputs in {out}/: report.md, validation.png, validation.nc, simulation.nc, averaged.nc, "
                 "surrogate.h5, surrogate_from_estimates.h5, surrogate.mss, summary.json, summary.txt")
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if summary["all_checks_passed"] else 1
