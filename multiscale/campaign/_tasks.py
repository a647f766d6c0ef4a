"""Executing one campaign task: a simulation path range (checkpointed mid-run), an averaging
block of slow points, or the training of a grid point's surrogate.

Each task computes exactly what the corresponding direct call computes with the derived seed:
``simulate(..., n_paths=N, seed=derived_seed(point, "simulate"))`` restricted to the task's
path range, or ``AveragingEstimator(options, seed=derived_seed(point, "average", "a-b"))
.fit(model, x_points[a:b])``, so the merged dataset equals the direct result.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Any, Callable

import numpy as np
import xarray as xr

from .._device import build_info
from ..averaging import AveragingEstimator
from ..models import get_model
from ..simulate._options import FastStep, Precision
from ..simulate._simulate import simulate
from ._spec import CampaignSpec, Task, _steps
from ._store import Store, _fault

# Attributes that differ between runs of the same computation: dropped from task results so
# the merged dataset is identical whatever ran it.
_VOLATILE = ("created",)


def _clean(ds: xr.Dataset) -> xr.Dataset:
    for k in _VOLATILE:
        ds.attrs.pop(k, None)
    return ds


def model_eps(spec: CampaignSpec, setup: dict) -> float | None:
    return setup["eps"] if get_model(spec.model).uses_eps else None


def simulate_direct_kwargs(spec: CampaignSpec, task: Task) -> dict[str, Any]:
    """The keyword arguments of :func:`multiscale.simulate` that the task's grid point runs."""
    s = spec.simulate
    st = spec.point_setup(task.point)
    return dict(t_end=s.t_end, dt=st["dt"], params=st["params"], eps=model_eps(spec, st),
                x0=None if s.x0 is None else np.asarray(s.x0), y0=None if s.y0 is None else np.asarray(s.y0),
                seed=spec.derived_seed(task.point, "simulate"), save_fast=s.save_fast,
                fast_step=FastStep(s.fast_step), precision=Precision(s.precision),
                save_times=_save_steps(spec, st["dt"]) * st["dt"])


def _save_steps(spec: CampaignSpec, dt: float) -> np.ndarray:
    s = spec.simulate
    n = _steps(s.t_end, dt, "simulate.t_end")
    k = n if s.save_every is None else _steps(s.save_every, dt, "simulate.save_every")
    return np.arange(0, n + 1, k, dtype=np.int64)


def run_simulate(spec: CampaignSpec, task: Task, store: Store, *, device: str, threads: int | None,
                 log: Callable[[str], None]) -> xr.Dataset:
    """A path range, in segments of about ``checkpoint_seconds``; each segment continues the
    last with ``step_offset`` (noise keyed by the global step), so segmenting, and resuming
    from a checkpoint, give bitwise the numbers of one uninterrupted call."""
    s = spec.simulate
    kw = simulate_direct_kwargs(spec, task)
    dt = kw["dt"]
    n_total = _steps(s.t_end, dt, "simulate.t_end")
    saves = _save_steps(spec, dt)
    info = get_model(spec.model)
    m, _ = info.dims(info.resolve_params(kw["params"]))
    npaths = task.stop - task.start
    expect = {"task": task.id, "spec_hash": spec.spec_hash, "version": build_info()["version"]}

    done = 0
    x0, y0 = kw.pop("x0"), kw.pop("y0")
    status = np.zeros(npaths, np.int8)
    fail_step = np.full(npaths, -1, np.int64)
    final = None
    pieces: list[np.ndarray] = []
    ck = store.read_checkpoint(task.filename, expect)
    if ck is not None:
        arrays, meta = ck
        done = int(meta["step"])
        final, status, fail_step = arrays["final_state"], arrays["status"], arrays["fail_step"]
        pieces = [arrays["trajectory"]]
        log(f"{task.id}: resuming from its checkpoint at step {done} of {n_total}")
    kw.pop("save_times")
    kw.pop("t_end")
    seg = max(1, min(n_total, 64))
    while done < n_total:
        seg = min(seg, n_total - done)
        local = saves[(saves >= (done if done == 0 else done + 1)) & (saves <= done + seg)] - done
        if final is not None:
            x0, y0 = final[:, :m], final[:, m:]
        t0 = time.perf_counter()
        ds = simulate(spec.model, **kw, t_end=seg * dt, x0=x0, y0=y0, n_paths=npaths, save_times=local * dt,
                      device=device, threads=threads, path_offset=task.start, step_offset=done, throw=False)
        wall = time.perf_counter() - t0
        new_final = ds["final_state"].values
        new_status, new_fail = ds["status"].values, ds["fail_step"].values
        traj = ds["trajectory"].values if "trajectory" in ds else np.zeros((npaths, 0, 0), new_final.dtype)
        # A path that failed in an earlier segment stays as it failed: its last finite state,
        # status and step, and NaN from then on, as in one uninterrupted call.
        dead = status != 0
        if dead.any():
            new_final[dead] = final[dead]
            new_status[dead], new_fail[dead] = status[dead], fail_step[dead]
            if traj.size:
                traj[dead] = np.nan
        final, status, fail_step = new_final, new_status, new_fail
        if traj.size:
            pieces.append(traj)
        done += seg
        if done < n_total:
            trajectory = _cat(pieces, npaths, final.dtype)
            pieces = [trajectory]
            t1 = time.perf_counter()
            store.write_checkpoint(task.filename, {"final_state": final, "status": status,
                                                   "fail_step": fail_step, "trajectory": trajectory},
                                   dict(expect, step=done))
            _fault("checkpoint")
            # Next segment: about checkpoint_seconds of work, and at least 10x the time a
            # checkpoint costs, growing at most 4x per segment while the rate is learned.
            target = max(s.checkpoint_seconds, 10 * (time.perf_counter() - t1))
            seg = int(max(1, min(4 * seg, seg / max(wall, 1e-6) * target)))
    out = ds  # the last segment's dataset carries the variable layout and attributes
    trajectory = _cat(pieces, npaths, final.dtype)
    out = out.drop_vars([v for v in ("trajectory", "time") if v in out])
    # Times as save index x save interval, not step x dt: identical across a dt grid axis.
    every = s.t_end if s.save_every is None else s.save_every
    out = out.assign_coords(time=("time", np.arange(len(saves)) * every,
                                  {"units": "model time", "long_name": "time"}))
    names = list(out["state_all"].values)
    keep = len(names) if s.save_fast else m
    out = out.assign_coords(state=names[:keep])
    out["trajectory"] = (("realization", "time", "state"), trajectory[:, :, :keep],
                         {"long_name": "state of each path at the saved times", "units": "model state units"})
    out["final_state"] = (("realization", "state_all"), final, out["final_state"].attrs)
    out["status"] = (("realization",), status, out["status"].attrs)
    out["fail_step"] = (("realization",), fail_step, out["fail_step"].attrs)
    for k in ("step_offset", "t_start"):
        out.attrs.pop(k, None)
    out.attrs.update(t_end=float(n_total * dt), n_steps=int(n_total), n_paths=int(npaths),
                     n_failed=int(np.count_nonzero(status)),
                     save_steps_json=json.dumps([int(v) for v in saves]))
    return _clean(out)


def _cat(pieces: list[np.ndarray], npaths: int, dtype) -> np.ndarray:
    pieces = [p for p in pieces if p.shape[1] > 0]
    return np.concatenate(pieces, axis=1) if pieces else np.zeros((npaths, 0, 0), dtype)


def run_average(spec: CampaignSpec, task: Task, *, device: str, threads: int | None) -> xr.Dataset:
    """Slow points [start, stop) of the averaging step."""
    av = spec.average
    st = spec.point_setup(task.point)
    seed = spec.derived_seed(task.point, "average", f"{task.start}-{task.stop}")
    est = AveragingEstimator(av.options, seed=seed, device=device, threads=threads)
    est.fit(spec.model, np.asarray(av.x_points[task.start:task.stop]), params=st["params"],
            eps=model_eps(spec, st))
    ds = est.result_
    return _clean(ds.assign_coords(point=np.arange(task.start, task.stop)))


def run_train(spec: CampaignSpec, task: Task, store: Store, inputs: xr.Dataset) -> xr.Dataset:
    """Train the grid point's effective SDE on its merged phase-0 results; the surrogate goes
    to ``surrogates/<point>.h5`` and its drift and diffusion at the evaluation points into the
    task result. Torch runs on one thread, and the member groups one at a time unless the spec
    says otherwise (``workers``): a rank is one core's work."""
    from ..surrogate import EffectiveSDEEstimator, SurrogateOptions, save_surrogate

    t = spec.train
    seed = spec.derived_seed(task.point, "train") % 2**63
    opts = SurrogateOptions(**{"workers": 1, **dict(t.options)}, seed=seed, threads=1, progress=False)
    dropped = 0
    if "status" in inputs:  # trajectories: failed paths (NaN after their failure) are left out
        bad = inputs["status"].values != 0
        dropped = int(bad.sum())
        if dropped == bad.size:
            raise ValueError(f"all {dropped} simulated paths failed; nothing to train on")
        inputs = inputs.isel(realization=np.flatnonzero(~bad))
    model = EffectiveSDEEstimator(opts).fit(inputs).fetch_model()
    path = store.surrogates / f"{task.point.key}.h5"
    save_surrogate(model, path)
    m = model.dim
    if t.eval_points is not None:
        xe = np.asarray(t.eval_points, float)
    elif "x" in inputs:
        xe = np.asarray(inputs["x"].values, float)
    elif m == 1:
        lo, hi = np.nanquantile(inputs["trajectory"].values[..., 0], [0.01, 0.99])
        xe = np.linspace(lo, hi, 41)[:, None]
    else:  # 41 data states, evenly spaced through the (path, time) samples
        data = inputs["trajectory"].values[..., :m].reshape(-1, m)
        xe = data[np.linspace(0, len(data) - 1, 41).astype(int)]
    d = np.asarray(model.drift(xe)).reshape(len(xe), m)
    ds_ = np.asarray(model.drift_spread(xe)).reshape(len(xe), m)
    a = np.asarray(model.diffusion(xe)).reshape(len(xe), -1)
    as_ = np.asarray(model.diffusion_spread(xe)).reshape(len(xe), -1)
    return xr.Dataset(
        {"surrogate_drift": (("eval_point", "slow_dim"), d, {"long_name": "learned drift (ensemble mean)"}),
         "surrogate_drift_spread": (("eval_point", "slow_dim"), ds_, {"long_name": "ensemble spread of the drift"}),
         "surrogate_diffusion": (("eval_point", "diffusion_entry"), a,
                                 {"long_name": "learned diffusion matrix A = sigma sigma^T, row-major"}),
         "surrogate_diffusion_spread": (("eval_point", "diffusion_entry"), as_, {})},
        coords={"x_eval": (("eval_point", "slow_dim"), xe)},
        attrs={"surrogate_file": f"surrogates/{path.name}", "train_seed": str(seed), "paths_dropped": dropped})


def run_validate(spec: CampaignSpec, task: Task, store: Store, estimates: xr.Dataset | None, *,
                 threads: int | None) -> xr.Dataset:
    """Validate the grid point's surrogate; the report goes to ``reports/<point>/`` and its
    numbers (variables and dimensions prefixed ``validation_``) into the task result."""
    import torch

    from ..surrogate import load_surrogate
    from ..validate import validate

    st = spec.point_setup(task.point)
    seed = spec.derived_seed(task.point, "validate") % 2**63
    settings = spec.validation_settings(st, seed, threads)
    sur = load_surrogate(store.surrogates / f"{task.point.key}.h5")
    folder = store.root / "reports" / task.point.key
    # The report is written to a temporary folder renamed into place, so a kill never leaves a
    # half-written report under the final name.
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)  # surrogate runs: numbers independent of the machine's cores
    try:
        rep = validate(sur, spec.model, params=st["params"], settings=settings, estimates=estimates,
                       out=tmp, progress=False)
    finally:
        torch.set_num_threads(prev)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    ds = rep.dataset
    ds = ds.rename({**{v: f"validation_{v}" for v in ds.variables},
                    **{d: f"validation_{d}" for d in ds.dims if d not in ds.variables}})
    names = sorted(rep.checks)
    ds["validation_check_passed"] = (("validation_check",), np.asarray([rep.checks[k] for k in names], np.int8))
    ds = ds.assign_coords(validation_check=names)
    ds.attrs = {"report": f"reports/{task.point.key}/report.md", "passed": int(rep.passed)}
    return ds
