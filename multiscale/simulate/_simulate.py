"""The ensemble simulation entry point."""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from typing import Any, Mapping

import numpy as np
import xarray as xr

from .. import _core
from .._checks import integer, positive_finite
from .._checks import seed as check_seed
from .._device import build_info, parse_device
from .._errors import SimulationError
from ..models import ModelInfo, get_model
from ._grid import save_steps, steps_of
from .._status import STATUS_MEANINGS, Status  # the registry: csrc/include/multiscale/status.h
from ._options import FastStep, Observables, Precision

RNG_NAME = "Philox4x32-10"


def _initial(name: str, value: Any, default: np.ndarray, n_paths: int, dim: int) -> np.ndarray:
    """Broadcast a scalar, per-variable (dim,) or per-path (n_paths, dim) initial state."""
    if dim == 0:
        if value is not None and np.size(value) != 0:
            raise ValueError(f"{name} given but the model has no such variables")
        return np.zeros((n_paths, 0))
    if value is None:
        arr = np.broadcast_to(default, (n_paths, dim))
    else:
        try:
            arr = np.asarray(value, dtype=float)
        except (TypeError, ValueError):
            raise ValueError(f"{name}={value!r} is not numeric") from None
        if arr.ndim == 0:
            arr = np.full((n_paths, dim), float(arr))
        elif arr.ndim == 1 and arr.shape[0] == dim:
            arr = np.broadcast_to(arr, (n_paths, dim))
        elif arr.ndim == 1 and dim == 1 and arr.shape[0] == n_paths:
            arr = arr[:, None]
        elif arr.ndim == 2 and arr.shape == (n_paths, dim):
            pass
        else:
            raise ValueError(
                f"{name} has shape {arr.shape}; expected a scalar, ({dim},) or ({n_paths}, {dim})")
    if not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(np.asarray(arr)))[0]
        raise ValueError(f"{name} contains a non-finite value at index {tuple(int(i) for i in bad)}")
    return np.asarray(arr, dtype=float)


def _memory_guard(nbytes: int, what: str) -> None:
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return
    if nbytes > 0.8 * avail:
        raise ValueError(
            f"{what} would need {nbytes / 2**30:.1f} GiB but only {avail / 2**30:.1f} GiB is free; "
            "save fewer times (save_every/save_times) or use Observables for streaming statistics")


def simulate(
    model: str | ModelInfo,
    *,
    t_end: float,
    dt: float,
    params: Mapping[str, float] | None = None,
    eps: float | None = None,
    x0: Any = None,
    y0: Any = None,
    n_paths: int = 1,
    seed: int = 0,
    save_every: int | None = None,
    save_times: Any = None,
    save_fast: bool = True,
    observables: Observables | None = None,
    fast_step: FastStep = FastStep.AUTO,
    precision: Precision = Precision.FLOAT64,
    device: str = "cpu",
    threads: int | None = None,
    path_offset: int = 0,
    step_offset: int = 0,
    throw: bool = True,
) -> xr.Dataset:
    """Simulate an ensemble of a catalogue fast/slow SDE in compiled kernels.

    Parameters
    ----------
    model : str or ModelInfo
        Catalogue name (see ``multiscale.list_models()`` or ``multiscale models``).
    t_end : float
        Duration of this call (time units of the model); must be a multiple of ``dt``.
    dt : float
        Time step (of the slow variables; the fast step in fast time is ``dt/eps`` or
        ``dt/eps**2`` depending on the model's scaling).
    params : dict, optional
        Parameter values overriding the model defaults.
    eps : float, optional
        Scale separation, > 0; defaults to the model's ``default_eps``. Must be omitted for
        models that do not use it.
    x0, y0 : float, array (m,) / (n,), or array (n_paths, m) / (n_paths, n), optional
        Initial slow and fast state; defaults to the model's.
    n_paths : int
        Number of independent realisations.
    seed : int
        Seed in [0, 2**64). Noise is a function of (seed, global path index, step) only.
    save_every : int, optional
        Store the state every this many steps (must divide the run). Default: t=0 and t_end.
    save_times : array of float, optional
        Times (multiples of ``dt``) at which to store the state; ``[]`` stores none.
    save_fast : bool
        Store fast components in ``trajectory`` (``final_state`` always has all).
    observables : Observables, optional
        Streaming window statistics computed in the kernel.
    fast_step : FastStep
        Fast-variable update (``AUTO``: exact OU where the model allows it).
    precision : Precision
    device : {"cpu", "cuda", "cuda:N"}
    threads : int, optional
        CPU threads (default: all cores). Results do not depend on it.
    path_offset : int
        Global index of the first path, for splitting one ensemble into chunks or ranks:
        ``simulate(..., n_paths=a, path_offset=0)`` and ``(..., n_paths=b, path_offset=a)``
        reproduce ``simulate(..., n_paths=a+b)`` exactly.
    step_offset : int
        Number of steps already taken by the run this call continues: the noise of step ``s``
        is keyed by ``step_offset + s``, so ``simulate(t_end=T1)`` followed by
        ``simulate(x0=..., y0=..., t_end=T-T1, step_offset=T1/dt)`` from its final state
        reproduces ``simulate(t_end=T)`` bitwise. The ``time`` coordinate (and the observable
        windows) and ``fail_step`` are global (shifted by ``step_offset*dt`` and
        ``step_offset``); ``save_times`` and the ``Observables`` times count from the start of
        this call.
    throw : bool
        Raise :class:`SimulationError` if any path fails (the dataset is attached);
        otherwise return it with the per-path ``status``.

    Returns
    -------
    xarray.Dataset
        ``trajectory`` (realization, time, state), ``final_state`` (realization, state_all),
        ``status`` and ``fail_step`` (realization), and, with ``observables``, ``obs_mean``,
        ``obs_var``, ``obs_count`` (window, observable) and histograms. Attributes record
        everything needed to re-simulate (see :func:`multiscale.resimulate`).
    """
    info = get_model(model)
    p = info.resolve_params(params)
    if info.uses_eps:
        eps_v = positive_finite("eps", info.default_eps if eps is None else eps)
    else:
        if eps is not None:
            raise ValueError(f"eps={eps!r} given, but model {info.name!r} does not use eps")
        eps_v = 1.0
    dt = positive_finite("dt", dt)
    t_end = positive_finite("t_end", t_end)
    n_steps = steps_of(t_end, dt, "t_end")
    n_paths = integer("n_paths", n_paths, 1)
    seed = check_seed("seed", seed)
    path_offset = integer("path_offset", path_offset, 0)
    if path_offset + n_paths > 2**32:
        raise ValueError(f"path_offset + n_paths = {path_offset + n_paths} exceeds 2**32 paths")
    step_offset = integer("step_offset", step_offset, 0)
    if step_offset + n_steps >= 2**63:
        raise ValueError(f"step_offset + n_steps = {step_offset + n_steps} must be < 2**63")
    nthreads = 0 if threads is None else integer("threads", threads, 1)
    if not isinstance(fast_step, FastStep):
        raise ValueError(f"fast_step={fast_step!r} must be a multiscale.FastStep")
    if not isinstance(precision, Precision):
        raise ValueError(f"precision={precision!r} must be a multiscale.Precision")
    if fast_step is FastStep.EXACT_OU and not info.exact_ou:
        raise ValueError(f"fast_step=EXACT_OU: model {info.name!r} has no linear fast drift")
    exact_ou = info.exact_ou and fast_step is not FastStep.EULER
    dev = parse_device(device)

    m, n = info.dims(p)
    slow_names, fast_names = info.state_names(p)
    names = slow_names + fast_names
    dx, dy = info.default_initial(p)
    xi = _initial("x0", x0, dx, n_paths, m)
    yi = _initial("y0", y0, dy, n_paths, n)
    init = np.ascontiguousarray(np.concatenate([xi, yi], axis=1))
    saves = save_steps(n_steps, dt, save_every, save_times)
    itemsize = 8 if precision is Precision.FLOAT64 else 4
    _memory_guard(n_paths * len(saves) * (m + n) * itemsize, "storing the trajectory")

    obs_vars, shift, edges, bins, lo, hi = observable_plan(observables, names, info.name, n_steps, dt)

    core = info.core or _core  # a user model brings its own compiled module
    fn = core.simulate_float64 if precision is Precision.FLOAT64 else core.simulate_float32
    res = fn(model_id=info.id, params=np.asarray([p[k] for k in info.param_names], float), eps=eps_v,
             dt=dt, n_steps=n_steps, seed=seed, path_offset=path_offset, step_offset=step_offset,
             x_init=init, save_steps=saves, exact_ou=exact_ou, threads=nthreads, obs_vars=obs_vars,
             obs_shift=shift, window_edges=edges, bins=bins, lo=lo, hi=hi, device=dev)

    ds = _to_dataset(info, p, eps_v, dt, n_steps, seed, path_offset, step_offset, n_paths, names, m,
                     saves, res, save_fast, observables, obs_vars, edges, bins, lo, hi, exact_ou,
                     precision, device)
    failed = int(np.count_nonzero(res["status"] != Status.OK))
    if failed and throw:
        raise SimulationError(_failure_message(ds, failed), dataset=ds)
    return ds


def observable_plan(observables: Observables | None, names: list[str], model: str, n_steps: int,
                    dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, int, np.ndarray, np.ndarray]:
    """Checked streaming-statistics settings: state indices, shifts, window edges (steps),
    histogram bins and ranges; empty arrays without ``observables``."""
    obs_vars = np.zeros(0, np.int32)
    shift = np.zeros(0)
    edges = np.zeros(0, np.int64)
    bins, lo, hi = 0, np.zeros(0), np.zeros(0)
    if observables is None:
        return obs_vars, shift, edges, bins, lo, hi
    if not isinstance(observables, Observables):
        raise ValueError(f"observables={observables!r} must be a multiscale.Observables")
    idx = []
    for v in observables.variables:
        if v not in names:
            raise ValueError(f"observable {v!r} is not a state of {model!r}; states: {names[:12]}")
        idx.append(names.index(v))
    obs_vars = np.asarray(idx, np.int32)
    shift = np.full(len(idx), float(observables.shift))
    start = steps_of(float(observables.start), dt, "Observables.start")
    if not 0 <= start < n_steps:
        raise ValueError(f"Observables.start={observables.start!r} must lie in [0, t_end)")
    if observables.window is None:
        edges = np.array([start, n_steps], np.int64)
    else:
        w = steps_of(positive_finite("Observables.window", observables.window), dt, "Observables.window")
        if (n_steps - start) % w:
            raise ValueError(
                f"Observables.window={observables.window!r} does not divide t_end - start = "
                f"{(n_steps - start) * dt!r}")
        edges = np.arange(start, n_steps + 1, w, dtype=np.int64)
    if observables.histogram is not None:
        h = observables.histogram
        bins = h.bins
        lo = np.full(len(idx), float(h.lo))
        hi = np.full(len(idx), float(h.hi))
    return obs_vars, shift, edges, bins, lo, hi


def observable_variables(observables: Observables, edges: np.ndarray, dt: float, bins: int, lo: np.ndarray,
                         hi: np.ndarray, res: Mapping[str, np.ndarray],
                         step_offset: int = 0) -> tuple[dict, dict]:
    """Coordinates and variables of the streaming statistics in a simulation dataset; window
    times are global (``edges`` count steps of this call, which starts at ``step_offset``)."""
    t = (step_offset + edges) * dt
    coords: dict[str, Any] = {"observable": list(observables.variables),
                              "window_start": ("window", t[:-1], {"units": "model time"}),
                              "window_end": ("window", t[1:], {"units": "model time"})}
    data_vars: dict[str, Any] = {
        "obs_mean": (("window", "observable"), res["obs_mean"],
                     {"long_name": "mean over the live path-states of the window"}),
        "obs_var": (("window", "observable"), res["obs_var"],
                    {"long_name": "unbiased variance over the live path-states of the window"}),
        "obs_count": (("window", "observable"), res["obs_count"],
                      {"long_name": "number of path-states summed", "units": "1"})}
    if bins:
        h = res["hist"]
        edges_b = np.linspace(lo[0], hi[0], bins + 1)
        coords["bin_center"] = ("bin", 0.5 * (edges_b[1:] + edges_b[:-1]), {"units": "model state units"})
        coords["bin_edge_lo"] = ("bin", edges_b[:-1])
        coords["bin_edge_hi"] = ("bin", edges_b[1:])
        data_vars["hist_count"] = (("window", "observable", "bin"), h[:, :, 1:-1],
                                   {"long_name": "histogram counts of path-states", "units": "1"})
        data_vars["hist_underflow"] = (("window", "observable"), h[:, :, 0], {"units": "1"})
        data_vars["hist_overflow"] = (("window", "observable"), h[:, :, -1], {"units": "1"})
    return coords, data_vars


def _failure_message(ds: xr.Dataset, failed: int) -> str:
    status = ds["status"].values
    parts = []
    for code in Status:
        if code is Status.OK:
            continue
        sel = np.flatnonzero(status == code)
        if sel.size:
            nonfinite = code is Status.NONFINITE
            first = sel[np.argmin(ds["fail_step"].values[sel])] if nonfinite else sel[0]
            where = ""
            if nonfinite:
                step = int(ds["fail_step"].values[first])
                where = f" (first at step {step}, t={step * ds.attrs['dt']:.6g}, path {int(ds.realization.values[first])})"
            parts.append(f"{sel.size} {code.name}{where}")
    return (f"{failed} of {status.size} paths of model {ds.attrs['model']!r} did not finish: "
            + ", ".join(parts) + ". The dataset with per-path status is attached as .dataset; "
            "pass throw=False to get it returned instead (a smaller dt usually helps with NONFINITE).")


def _to_dataset(info, p, eps, dt, n_steps, seed, path_offset, step_offset, n_paths, names, m, saves,
                res, save_fast, observables, obs_vars, edges, bins, lo, hi, exact_ou, precision, device):
    realization = np.arange(path_offset, path_offset + n_paths, dtype=np.int64)
    data_vars: dict[str, Any] = {}
    coords: dict[str, Any] = {"realization": realization, "state_all": names}
    if len(saves):
        traj = res["trajectory"]
        keep = len(names) if save_fast else m
        coords["time"] = ("time", (step_offset + saves) * dt, {"units": "model time", "long_name": "time"})
        coords["state"] = names[:keep]
        data_vars["trajectory"] = (("realization", "time", "state"), traj[:, :, :keep],
                                   {"long_name": "state of each path at the saved times",
                                    "units": "model state units"})
    data_vars["final_state"] = (("realization", "state_all"), res["final_state"],
                                {"long_name": "state at t_end (last finite state for failed paths)",
                                 "units": "model state units"})
    data_vars["status"] = (("realization",), res["status"],
                           {"long_name": "per-path status", "flag_values": np.arange(len(STATUS_MEANINGS), dtype=np.int8),
                            "flag_meanings": " ".join(STATUS_MEANINGS)})
    fail = res["fail_step"]  # local to the call; global like the time coordinate
    data_vars["fail_step"] = (("realization",), np.where(fail >= 0, fail + step_offset, fail),
                              {"long_name": "step index at which the path failed (-1: none)",
                               "units": "steps"})
    if observables is not None:
        c, v = observable_variables(observables, edges, dt, bins, lo, hi, res, step_offset)
        coords.update(c)
        data_vars.update(v)
    bi = build_info()
    attrs = {
        "title": f"multiscale simulation of {info.name}",
        "model": info.name,
        "model_equations": info.equations,
        "scaling": info.scaling.value,
        "params_json": json.dumps(p),
        **{f"param_{k}": float(v) for k, v in p.items()},
        # The roles of the states: what a surrogate fit models by default (the slow ones).
        "slow_states_json": json.dumps([str(n) for n in names[:m]]),
        "fast_states_json": json.dumps([str(n) for n in names[m:]]),
        "eps": float(eps) if info.uses_eps else float("nan"),
        "dt": float(dt),
        "n_steps": int(n_steps),
        "t_end": float(n_steps * dt),  # duration of this call
        "t_start": float(step_offset * dt),
        "step_offset": int(step_offset),
        "n_paths": int(n_paths),
        "path_offset": int(path_offset),
        "seed": str(seed),  # up to 2**64 - 1: netCDF has no uint64 attribute everywhere
        "rng": RNG_NAME,
        "rng_counter": "key=(lo, hi) of splitmix64(seed); ctr=(block | stream<<24, path, step lo, step hi)",
        "integrator": "euler_maruyama",
        "fast_step": "exact_ou" if exact_ou else "euler",
        "precision": precision.value,
        "device": device,
        "save_steps_json": json.dumps([int(s) for s in saves]),
        "save_fast": int(bool(save_fast)),
        "observables_json": json.dumps(None if observables is None else {
            "variables": list(observables.variables), "window": observables.window,
            "start": observables.start, "shift": observables.shift,
            "histogram": None if observables.histogram is None else {
                "bins": observables.histogram.bins, "lo": observables.histogram.lo,
                "hi": observables.histogram.hi}}),
        "n_failed": int(np.count_nonzero(res["status"] != Status.OK)),
        "package": "multiscale",
        "package_version": bi["version"],
        "build_info_json": json.dumps(bi),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return xr.Dataset(data_vars, coords=coords, attrs=attrs)


def resimulate(ds: xr.Dataset, **overrides: Any) -> xr.Dataset:
    """Run again the simulation that produced ``ds`` from its attributes alone.

    The initial state is taken from ``trajectory`` at the start of the call (t=0, or
    ``t_start`` for a continued run) when it was saved with the fast components, else the
    model default; ``overrides`` replace any :func:`simulate` argument.
    """
    a = ds.attrs
    saves = json.loads(a["save_steps_json"])  # steps of the call: 0 is its initial state
    kwargs: dict[str, Any] = dict(
        params=json.loads(a["params_json"]),
        eps=None if math.isnan(a["eps"]) else a["eps"],
        t_end=a["t_end"], dt=a["dt"], n_paths=int(a["n_paths"]), seed=int(a["seed"]),
        path_offset=int(a["path_offset"]), step_offset=int(a.get("step_offset", 0)),
        save_times=np.asarray(saves) * a["dt"],
        save_fast=bool(a["save_fast"]),
        fast_step=FastStep(a["fast_step"]), precision=Precision(a["precision"]),
    )
    obs = json.loads(a["observables_json"])
    if obs is not None:
        from ._options import Histogram
        h = obs.pop("histogram")
        kwargs["observables"] = Observables(
            variables=tuple(obs["variables"]), window=obs["window"], start=obs["start"],
            shift=obs["shift"], histogram=None if h is None else Histogram(**h))
    if "trajectory" in ds and saves and saves[0] == 0 and bool(a["save_fast"]):
        info = get_model(a["model"])
        m, _ = info.dims(kwargs["params"])
        init = ds["trajectory"].isel(time=0).values.astype(float)
        kwargs["x0"], kwargs["y0"] = init[:, :m], init[:, m:]
    kwargs.update(overrides)
    return simulate(a["model"], **kwargs)
