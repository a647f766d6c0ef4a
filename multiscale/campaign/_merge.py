"""Merging task results into one dataset, in a fixed order (grid point, step, range), so the
merged file's values do not depend on which rank produced which task."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import xarray as xr

from ._spec import CampaignSpec, GridPoint, load_spec
from .._errors import CampaignError
from ._store import MERGED, Store, atomic_write


def _task_result(store: Store, spec: CampaignSpec, task) -> xr.Dataset:
    return store.load_result(task.filename, spec.spec_hash, task.id)


def point_inputs(spec: CampaignSpec, store: Store, point: GridPoint, step: str) -> xr.Dataset:
    """The merged result of one step at one grid point (its tasks concatenated in order)."""
    parts = [_task_result(store, spec, t) for t in spec.tasks_of(point, step)]
    if not parts:
        raise CampaignError(f"grid point {point.key} has no {step!r} tasks")
    dim = "realization" if step == "simulate" else "point"
    if len(parts) == 1:
        return parts[0]
    keep = [v for v in parts[0].data_vars if dim in parts[0][v].dims]
    out = xr.concat([p[keep] for p in parts], dim=dim, coords="minimal", compat="override",
                    combine_attrs="override")
    for v in parts[0].data_vars:  # variables without the split dimension are the same in every part
        if v not in keep:
            out[v] = parts[0][v]
    if step == "simulate":
        out.attrs.update(n_paths=int(out.sizes["realization"]), path_offset=0,
                         n_failed=int(np.count_nonzero(out["status"].values)))
    else:
        out.attrs.pop("seed", None)  # each block has its own seed: see `average_seed`
    return out


def merge_campaign(out: str | os.PathLike, *, spec: CampaignSpec | None = None) -> Path:
    """Merge the finished tasks of the campaign in ``out`` into ``out/campaign.nc``.

    The dataset has a ``grid`` dimension with one coordinate per grid axis (``eps``, ``dt``,
    ``seed``, and each swept parameter by name); simulation variables keep their
    ``realization``/``time``/``state`` dimensions, averaging ones ``point``/``slow``, and
    training ones ``eval_point``. Derived seeds are stored as variables. Returns the path.
    """
    store = Store(out)
    if spec is None:
        man = store.read_manifest()
        if man is None:
            raise CampaignError(f"{out} is not a campaign folder (no campaign.json)")
        spec = load_spec(man["spec"])
    grid = spec.grid()
    per_point: list[xr.Dataset] = []
    roles: dict[str, str] = {}
    for g in grid:
        pieces: list[xr.Dataset] = []
        if spec.simulate is not None:
            sim = point_inputs(spec, store, g, "simulate")
            roles = {k: sim.attrs[k] for k in ("slow_states_json", "fast_states_json") if k in sim.attrs}
            keep = [v for v in ("trajectory", "final_state", "status", "fail_step") if v in sim]
            pieces.append(sim[keep].drop_attrs() if hasattr(sim, "drop_attrs") else _noattrs(sim[keep]))
        if spec.average is not None:
            avg = point_inputs(spec, store, g, "average")
            avg = _noattrs(avg.rename({"replica_status": "average_replica_status"}))
            pieces.append(avg)
        if spec.train is not None:
            tr = _task_result(store, spec, spec.tasks_of(g, "train")[0])
            pieces.append(_noattrs(tr).assign(surrogate_file=((), tr.attrs["surrogate_file"])))
        if spec.validate is not None:
            va = _task_result(store, spec, spec.tasks_of(g, "validate")[0])
            pieces.append(_noattrs(va).assign(validation_passed=((), np.int8(va.attrs["passed"])),
                                              validation_report=((), va.attrs["report"])))
        ds = xr.merge(pieces, compat="override", join="outer", combine_attrs="drop")
        seeds: dict[str, tuple] = {}
        if spec.simulate is not None:
            seeds["simulate_seed"] = ((), np.uint64(spec.derived_seed(g, "simulate")))
        if spec.average is not None:
            blocks = spec.tasks_of(g, "average")
            s = np.zeros(len(spec.average.x_points), np.uint64)
            for t in blocks:
                s[t.start:t.stop] = spec.derived_seed(g, "average", f"{t.start}-{t.stop}")
            seeds["average_seed"] = (("point",), s)
        if spec.validate is not None:
            seeds["validate_seed"] = ((), np.uint64(spec.derived_seed(g, "validate") % 2**63))
        if spec.train is not None:
            seeds["train_seed"] = ((), np.uint64(spec.derived_seed(g, "train") % 2**63))
        per_point.append(ds.assign(seeds))
    if "time" in per_point[0].coords and any(not np.array_equal(d["time"].values, per_point[0]["time"].values)
                                             for d in per_point):
        raise CampaignError("grid points saved at different times; cannot merge them on one time axis")
    merged = xr.concat(per_point, dim="grid", join="outer", coords="different", compat="equals",
                       combine_attrs="drop")
    merged = merged.assign_coords(grid=np.arange(len(grid)))
    for axis, values in spec.axes.items():
        # Parameters as param_<name>: a bare name can clash with a variable (Lorenz-96's F).
        name = f"param_{axis[7:]}" if axis.startswith("params.") else axis
        merged = merged.assign_coords({name: ("grid", np.asarray([g.values[axis] for g in grid]),
                                              {"long_name": f"grid axis {axis}"})})
    man = store.read_manifest() or {}
    devices = sorted({(store.read_record(t.filename) or {}).get("device", "?") for t in spec.tasks()})

    merged.attrs = {
        "title": f"multiscale campaign {spec.name}",
        "model": spec.model_name,
        "campaign_seed": str(spec.seed),
        "spec_hash": spec.spec_hash,
        **({"model_toml": spec.model.to_toml()} if not isinstance(spec.model, str) else {}),
        "spec_json": json.dumps(spec.source, sort_keys=True),
        "grid_axes": json.dumps(list(spec.axes)),
        **roles,
        "fixed_params_json": json.dumps(dict(spec.params)),
        "steps": " ".join(spec.steps),
        "package": "multiscale",
        "package_version": str(man.get("package_version", "")),
        "devices": " ".join(devices),  # CPU and GPU agree to rounding, not bitwise
        "seed_rule": "sha256('multiscale-campaign:{seed}:{point json}:{step}:{block}')[:8] little-endian",
    }
    path = store.root / MERGED
    atomic_write(path, lambda tmp: merged.to_netcdf(tmp, engine="h5netcdf"))
    return path


def _noattrs(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {}
    return ds
