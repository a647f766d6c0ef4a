"""Campaign specifications: a TOML file -> a checked, frozen spec -> a deterministic task list.

A campaign runs the same steps (simulate, average, train) at every point of a parameter grid.
Every task's id, seed and work are functions of the spec alone, never of the rank count, so
the merged result does not depend on how many ranks ran it.
"""
from __future__ import annotations

import difflib
import enum
import functools
import hashlib
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .._checks import finite, integer, positive_finite
from .._errors import CampaignSpecError, ModelCompileError, ModelLanguageError
from .._toml import read_toml
from ..averaging import AveragingOptions
from ..models import Model, get_model, load_model_file
from ..simulate._grid import steps_of
from ..simulate._options import FastStep

SPEC_FORMAT = 1

# Nominal throughputs of one x86 core (benchmarks/bench_*.py), used only by `plan`'s estimate.
_RATE_SIM = 1.5e8     # state-component updates per second
_RATE_AVG = 1.0e8     # fast-component updates per second
_RATE_TRAIN = 2.0e5   # (member x data point x epoch) per second


def _unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    for k in table:
        if k not in known:
            near = difflib.get_close_matches(k, sorted(known), n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {sorted(known)}"
            raise CampaignSpecError(f"{where}.{k}" if where else k, f"unknown key{hint}")


def _num(v: Any, key: str, *, positive: bool = False) -> float:
    """A finite number (> 0 with ``positive``), else a spec error naming ``key``."""
    try:
        return (positive_finite if positive else finite)(key.rsplit(".", 1)[-1], v)
    except ValueError as e:
        raise CampaignSpecError(key, str(e)) from None


def _int(v: Any, key: str, minimum: int = 1) -> int:
    """An integer >= ``minimum``, else a spec error naming ``key``."""
    try:
        return integer(key.rsplit(".", 1)[-1], v, minimum)
    except ValueError as e:
        raise CampaignSpecError(key, str(e)) from None


def _steps(t: float, dt: float, key: str, where: str = "") -> int:
    """``t/dt`` by the rule of :func:`multiscale.simulate` (so a spec that passes here passes
    there), as a spec error naming ``key`` (and ``where`` the dt came from)."""
    try:
        n = steps_of(t, dt, key.rsplit(".", 1)[-1])
    except ValueError as e:
        raise CampaignSpecError(key, f"{e}{f' (dt from {where})' if where else ''}") from None
    if n >= 2**62:
        raise CampaignSpecError(key, f"{t!r} / dt={dt!r} is {n} steps; at most 2**62")
    return n


@dataclass(frozen=True)
class SimulateStep:
    """``[simulate]``: an ensemble per grid point, split into path ranges of ``paths_per_task``."""

    t_end: float
    dt: float | None            # None: the grid's dt axis supplies it
    n_paths: int
    paths_per_task: int
    save_every: float | None    # model time between stored states (None: t=0 and t_end only)
    save_fast: bool = False
    x0: tuple[float, ...] | None = None
    y0: tuple[float, ...] | None = None
    precision: str = "float64"
    fast_step: str = "auto"
    checkpoint_seconds: float = 60.0


@dataclass(frozen=True)
class AverageStep:
    """``[average]``: the averaged drift and diffusion at slow points, ``points_per_task`` each."""

    x_points: tuple[tuple[float, ...], ...]
    points_per_task: int
    options: AveragingOptions


@dataclass(frozen=True)
class TrainStep:
    """``[train]``: an effective SDE per grid point, from that point's estimates or trajectories."""

    source: str                  # "average" or "simulate"
    options: Mapping[str, Any]   # SurrogateOptions keywords (threads fixed: see tasks)
    eval_points: tuple[tuple[float, ...], ...] | None = None


@dataclass(frozen=True)
class ValidateStep:
    """``[validate]``: the grid point's surrogate against the full system and the exact limit
    (:func:`multiscale.validate.validate`, one slow variable); ``quick`` starts from
    ``ValidationSettings.quick``."""

    settings: Mapping[str, Any]
    quick: bool = False


@dataclass(frozen=True)
class GridPoint:
    index: int
    values: Mapping[str, Any]    # axis name -> value (axes: eps, dt, seed, params.<name>)

    @property
    def key(self) -> str:
        return f"g{self.index:05d}"

    def canonical(self) -> str:
        return json.dumps(dict(sorted(self.values.items())), sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True)
class Task:
    """One unit of work. ``id`` is stable: ``g00003/simulate/000001024-000002048``."""

    id: str
    step: str
    point: GridPoint
    start: int = 0               # path range (simulate) or slow-point range (average)
    stop: int = 0
    cost: float = 0.0            # estimated core-seconds
    phase: int = 0               # 0: simulate/average, 1: train, 2: validate (each needs the last)

    @property
    def filename(self) -> str:
        return self.id.replace("/", ".")


@dataclass(frozen=True)
class CampaignSpec:
    """A checked campaign specification (see :func:`load_spec` for the TOML layout)."""

    name: str
    seed: int
    model: Any                  # catalogue name, or a user Model (campaign.model_file)
    params: Mapping[str, float]
    axes: Mapping[str, tuple[Any, ...]]
    simulate: SimulateStep | None
    average: AverageStep | None
    train: TrainStep | None
    validate: ValidateStep | None = None
    device: str = "cpu"
    threads: int | None = None
    source: Mapping[str, Any] = field(default_factory=dict, compare=False)

    # ------------------------------------------------------------------------------------------
    @functools.cached_property
    def spec_hash(self) -> str:
        """SHA-256 of the parsed spec: everything that changes results, as numbers (``1`` and
        ``1.0`` hash alike), but not how it runs (device, threads, checkpoint interval)."""
        def canon(v: Any) -> Any:
            if hasattr(v, "__dataclass_fields__"):
                return {f: canon(getattr(v, f)) for f in v.__dataclass_fields__
                        if f not in ("checkpoint_seconds", "source", "device", "threads")}
            if isinstance(v, Model):  # a user model is its definition's hash
                return {"user_model": v.source_hash()}
            if isinstance(v, enum.Enum):
                return v.value
            if isinstance(v, Mapping):
                return {str(k): canon(x) for k, x in sorted(v.items())}
            if isinstance(v, (list, tuple)):
                return [canon(x) for x in v]
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return float(v)
            return v

        text = json.dumps(canon(self), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(f"format={SPEC_FORMAT};{text}".encode()).hexdigest()

    @property
    def model_name(self) -> str:
        return self.model if isinstance(self.model, str) else self.model.name

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(s for s in ("simulate", "average", "train", "validate") if getattr(self, s) is not None)

    def grid(self) -> list[GridPoint]:
        """Cartesian product of the axes in spec order (the last axis varies fastest)."""
        names = list(self.axes)
        combos = itertools.product(*(self.axes[n] for n in names)) if names else [()]
        return [GridPoint(i, dict(zip(names, c))) for i, c in enumerate(combos)]

    def point_setup(self, point: GridPoint) -> dict[str, Any]:
        """Model parameters, eps, dt and replicate label at a grid point."""
        params = dict(self.params)
        out: dict[str, Any] = {"eps": None, "dt": None, "seed": 0}
        for k, v in point.values.items():
            if k.startswith("params."):
                params[k[7:]] = v
            else:
                out[k] = v
        out["params"] = params
        if out["dt"] is None and self.simulate is not None:
            out["dt"] = self.simulate.dt
        return out

    def derived_seed(self, point: GridPoint, step: str, extra: str = "") -> int:
        """The seed of a step at a grid point: SHA-256 of (campaign seed, point values, step)."""
        text = f"multiscale-campaign:{self.seed}:{point.canonical()}:{step}:{extra}"
        return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")

    def tasks(self) -> list[Task]:
        """All tasks, in a fixed order (grid point, step, range)."""
        return list(self._tasks)

    def tasks_of(self, point: GridPoint, step: str) -> list[Task]:
        """The tasks of one step at one grid point, in order."""
        return list(self._index.get((point.index, step), ()))

    @functools.cached_property
    def _index(self) -> dict[tuple[int, str], list[Task]]:
        out: dict[tuple[int, str], list[Task]] = {}
        for t in self._tasks:
            out.setdefault((t.point.index, t.step), []).append(t)
        return out

    @functools.cached_property
    def _tasks(self) -> tuple[Task, ...]:
        info = get_model(self.model)
        out: list[Task] = []
        for g in self.grid():
            st = self.point_setup(g)
            m, n = info.dims(info.resolve_params(st["params"]))
            if self.simulate is not None:
                s = self.simulate
                nsteps = _steps(s.t_end, st["dt"], "simulate.t_end")
                for a in range(0, s.n_paths, s.paths_per_task):
                    b = min(a + s.paths_per_task, s.n_paths)
                    cost = (b - a) * nsteps * (m + n) / _RATE_SIM
                    out.append(Task(f"{g.key}/simulate/{a:09d}-{b:09d}", "simulate", g, a, b, cost))
            if self.average is not None:
                av = self.average
                o = av.options
                fast = (o.burn_in + (o.max_time if o.target_stderr is not None and o.max_time
                                     else o.time)) / o.dt
                mult = 1 + (2 * m if o.corrector and info.scaling.value == "homogenization" else 0)
                npts = len(av.x_points)
                for a in range(0, npts, av.points_per_task):
                    b = min(a + av.points_per_task, npts)
                    cost = (b - a) * o.replicas * fast * n * mult / _RATE_AVG
                    out.append(Task(f"{g.key}/average/{a:05d}-{b:05d}", "average", g, a, b, cost))
            if self.train is not None:
                t = self.train
                members = int(t.options.get("members", 10))
                epochs = int(t.options.get("epochs", 1500)) + int(t.options.get("lbfgs_steps", 1500))
                ndata = len(self.average.x_points) if t.source == "average" else \
                    self.simulate.n_paths * max(1, _steps(self.simulate.t_end, st["dt"], "simulate.t_end")
                                                // max(1, self._save_steps(st["dt"])))
                out.append(Task(f"{g.key}/train", "train", g, 0, 0,
                                members * epochs * min(ndata, 8192) / _RATE_TRAIN, phase=1))
            if self.validate is not None:
                v = self.validation_settings(st, 0)
                work = (v.density_paths * (v.t_burn + v.t_density) + 2 * v.mfpt_paths * v.mfpt_max_time / 20) / v.dt
                out.append(Task(f"{g.key}/validate", "validate", g, 0, 0, work * (m + n) / _RATE_SIM, phase=2))
        return tuple(out)

    def validation_settings(self, setup: dict, seed: int, threads: int | None = None):
        """The :class:`ValidationSettings` of a grid point (its eps, a derived seed)."""
        from ..validate import ValidationSettings

        v = self.validate
        kw = dict(v.settings)
        info = get_model(self.model)
        if info.uses_eps:  # the eps the campaign simulated and averaged at, never quick()'s own
            kw["eps"] = setup["eps"] if setup["eps"] is not None else info.default_eps
        base = ValidationSettings.quick if v.quick else ValidationSettings
        return base(**kw, seed=seed, threads=threads)

    def _save_steps(self, dt: float) -> int:
        s = self.simulate
        return _steps(s.t_end, dt, "simulate.t_end") if s.save_every is None else \
            _steps(s.save_every, dt, "simulate.save_every")

    def storage_bytes(self) -> int:
        """Estimated size of the merged dataset."""
        info = get_model(self.model)
        total = 0
        for g in self.grid():
            st = self.point_setup(g)
            m, n = info.dims(info.resolve_params(st["params"]))
            if self.simulate is not None:
                s = self.simulate
                nsave = _steps(s.t_end, st["dt"], "simulate.t_end") // self._save_steps(st["dt"]) + 1
                item = 8 if s.precision == "float64" else 4
                total += s.n_paths * (nsave * ((m + n) if s.save_fast else m) + m + n) * item
            if self.average is not None:
                total += len(self.average.x_points) * (4 * m * m + 4 * m + self.average.options.replicas) * 8
        return total


# ----------------------------------------------------------------------------------------------
def load_spec(spec: str | Path | Mapping[str, Any]) -> CampaignSpec:
    """Read and check a campaign spec from a TOML file (or an equivalent dict).

    Layout::

        [campaign]            name, seed (int), model (catalogue name) or model_file (a
                              model-language TOML file, relative to the spec), device ("cpu", "cuda",
                              "auto": one GPU per rank where GPUs exist), threads (per rank)
        [params]              fixed model parameters
        [grid]                axes, Cartesian product: eps = [...], dt = [...], seed = [...]
                              (replicate labels mixed into the derived seeds)
        [grid.params]         parameter axes: NAME = [...]
        [simulate]            t_end, dt, n_paths, paths_per_task, save_every (time), save_fast,
                              x0, y0, precision, fast_step, checkpoint_seconds
        [average]             x_points (list, or {start, stop, num}), points_per_task, and the
                              AveragingOptions fields (dt, burn_in, time, replicas, batch, ...)
        [train]               source ("average" or "simulate"), eval_points, and
                              SurrogateOptions fields (members, hidden, epochs, ...)

    Raises
    ------
    CampaignSpecError
        Naming the key path of the first invalid entry.
    """
    doc = read_toml(spec, "campaign spec") if isinstance(spec, (str, Path)) else json.loads(json.dumps(dict(spec)))
    _unknown(doc, {"campaign", "params", "grid", "simulate", "average", "train", "validate"}, "")
    for k, v in doc.items():
        if not isinstance(v, dict):
            raise CampaignSpecError(k, f"must be a table, got {v!r}")
    c = doc.get("campaign", {})
    _unknown(c, {"name", "seed", "model", "model_file", "device", "threads"}, "campaign")
    if ("model" in c) == ("model_file" in c):
        raise CampaignSpecError("campaign.model", "give one of campaign.model (a catalogue name, see "
                                "`multiscale models`) or campaign.model_file (a model-language TOML file)")
    model: Any = c.get("model")
    if "model_file" in c:
        # Relative to the spec file, so a campaign folder moves with its model.
        base = Path(spec).parent if isinstance(spec, (str, Path)) else Path.cwd()
        if not isinstance(c["model_file"], str):
            raise CampaignSpecError("campaign.model_file", f"expected a path, got {c['model_file']!r}")
        try:
            model = load_model_file(base / c["model_file"])
        except ModelLanguageError as e:
            raise CampaignSpecError("campaign.model_file", str(e)) from None
    try:
        info = get_model(model)  # a user model is compiled now (or loaded from the cache)
    except (KeyError, ValueError, ModelCompileError) as e:
        raise CampaignSpecError("campaign.model" if "model" in c else "campaign.model_file",
                                str(e).strip("'\"")) from None
    name = c.get("name", "campaign")
    if not isinstance(name, str) or not name:
        raise CampaignSpecError("campaign.name", f"expected a non-empty string, got {name!r}")
    seed = c.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise CampaignSpecError("campaign.seed", f"expected an integer in [0, 2**63), got {seed!r}")
    device = c.get("device", "cpu")
    if device not in ("cpu", "cuda", "auto") and not (isinstance(device, str) and device.startswith("cuda:")):
        raise CampaignSpecError("campaign.device", f"expected 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    threads = c.get("threads")
    if threads is not None:
        threads = _int(threads, "campaign.threads")

    params = doc.get("params", {})
    for k, v in params.items():
        if k not in info.param_names:
            raise CampaignSpecError(f"params.{k}", f"model {info.name!r} has no parameter {k!r}; "
                                    f"it has {list(info.param_names)}")
        _num(v, f"params.{k}")

    grid = doc.get("grid", {})
    _unknown(grid, {"eps", "dt", "seed", "params"}, "grid")
    axes: dict[str, tuple[Any, ...]] = {}
    gp = grid.get("params", {})
    if not isinstance(gp, dict):
        raise CampaignSpecError("grid.params", f"must be a table, got {gp!r}")
    entries = [(k, grid[k], f"grid.{k}") for k in ("eps", "dt", "seed") if k in grid]
    entries += [(f"params.{k}", v, f"grid.params.{k}") for k, v in gp.items()]
    for name_, vals, key in entries:
        if not isinstance(vals, list) or not vals:
            raise CampaignSpecError(key, f"expected a non-empty list of values, got {vals!r}")
        if name_.startswith("params.") and name_[7:] not in info.param_names:
            raise CampaignSpecError(key, f"model {info.name!r} has no parameter {name_[7:]!r}; "
                                    f"it has {list(info.param_names)}")
        if name_.startswith("params.") and name_[7:] in params:
            raise CampaignSpecError(key, f"parameter {name_[7:]!r} is both fixed in [params] and a grid axis")
        if name_ == "seed":
            vals = [_int(v, f"{key}[{i}]", 0) for i, v in enumerate(vals)]
        else:
            vals = [_num(v, f"{key}[{i}]", positive=name_ in ("eps", "dt")) for i, v in enumerate(vals)]
        if len(set(vals)) != len(vals):
            raise CampaignSpecError(key, f"repeated values in {vals!r}")
        axes[name_] = tuple(vals)
    if "eps" in axes and not info.uses_eps:
        raise CampaignSpecError("grid.eps", f"model {info.name!r} does not use eps")

    sim = _simulate_step(doc["simulate"], "dt" in axes) if "simulate" in doc else None
    if "dt" in axes and sim is None:
        raise CampaignSpecError("grid.dt", "a dt axis needs a [simulate] step (averaging has its own dt)")
    avg = _average_step(doc["average"], info) if "average" in doc else None
    tr = _train_step(doc["train"], sim, avg) if "train" in doc else None
    val = _validate_step(doc["validate"], tr, info) if "validate" in doc else None
    if sim is None and avg is None:
        raise CampaignSpecError("simulate", "a campaign needs at least a [simulate] or an [average] step")
    out = CampaignSpec(name=name, seed=int(seed), model=info.name if isinstance(model, str) else model, params=dict(params), axes=axes,
                       simulate=sim, average=avg, train=tr, validate=val, device=device, threads=threads, source=doc)
    # Check parameters and step arithmetic now, not on a rank mid-run, naming the entry.
    try:
        info.resolve_params(params)
    except ValueError as e:
        raise CampaignSpecError("params", str(e)) from None
    for name_, vals in axes.items():
        for i, v in enumerate(vals):
            key = f"grid.{name_}[{i}]" if not name_.startswith("params.") else f"grid.params.{name_[7:]}[{i}]"
            if name_.startswith("params."):
                try:
                    info.resolve_params({**params, name_[7:]: v})
                except ValueError as e:
                    raise CampaignSpecError(key, str(e)) from None
            if name_ == "dt":
                _check_sim_steps(sim, v, key)
    if sim is not None and "dt" not in axes:
        _check_sim_steps(sim, sim.dt, "simulate.dt")
    if sim is not None and sim.n_paths > 2**32:
        raise CampaignSpecError("simulate.n_paths", f"{sim.n_paths} exceeds 2**32 paths")
    if sim is not None and sim.fast_step == "exact_ou" and not info.exact_ou:
        raise CampaignSpecError("simulate.fast_step", f"'exact_ou': model {info.name!r} has no linear fast drift")
    if avg is not None and avg.options.fast_step is FastStep.EXACT_OU and not info.exact_ou:
        raise CampaignSpecError("average.fast_step", f"'exact_ou': model {info.name!r} has no linear fast drift")
    for g in out.grid():
        st = out.point_setup(g)
        try:
            p = info.resolve_params(st["params"])
            m, n = info.dims(p)
        except ValueError as e:
            raise CampaignSpecError(f"grid point {g.values}", str(e)) from None
        if sim is not None:
            for nm, v, d in (("x0", sim.x0, m), ("y0", sim.y0, n)):
                if v is not None and len(v) != d:
                    raise CampaignSpecError(f"simulate.{nm}", f"expected {d} values, got {len(v)}")
        if avg is not None:
            if n == 0:
                raise CampaignSpecError("average", f"model {info.name!r} has no fast variables to average over")
            if len(avg.x_points[0]) != m:
                raise CampaignSpecError("average.x_points", f"points have {len(avg.x_points[0])} "
                                        f"components; the model has {m} slow variables")
        if tr is not None and tr.eval_points is not None and len(tr.eval_points[0]) != m:
            raise CampaignSpecError("train.eval_points", f"points have {len(tr.eval_points[0])} components; "
                                    f"the model has {m} slow variables")
    return out


def _check_sim_steps(sim: SimulateStep, dt: float, where: str) -> None:
    """t_end and save_every in whole steps of dt (``where`` names the dt entry)."""
    n = _steps(sim.t_end, dt, "simulate.t_end", where)
    if sim.save_every is not None:
        k = _steps(sim.save_every, dt, "simulate.save_every", where)
        if k < 1 or n % k:
            raise CampaignSpecError("simulate.save_every", f"{sim.save_every!r} must divide t_end={sim.t_end!r} "
                                    f"in whole steps of {where}={dt!r}")


def _simulate_step(t: dict, dt_axis: bool) -> SimulateStep:
    _unknown(t, {"t_end", "dt", "n_paths", "paths_per_task", "save_every", "save_fast", "x0", "y0",
                 "precision", "fast_step", "checkpoint_seconds"}, "simulate")
    if "t_end" not in t:
        raise CampaignSpecError("simulate.t_end", "missing")
    if dt_axis and "dt" in t:
        raise CampaignSpecError("simulate.dt", "given both here and as the grid axis grid.dt")
    if not dt_axis and "dt" not in t:
        raise CampaignSpecError("simulate.dt", "missing (or give a grid.dt axis)")
    n_paths = _int(t.get("n_paths", 1000), "simulate.n_paths")
    ppt = _int(t.get("paths_per_task", min(n_paths, 4096)), "simulate.paths_per_task")
    vecs = {}
    for k in ("x0", "y0"):
        v = t.get(k)
        if v is not None:
            v = [v] if not isinstance(v, list) else v
            vecs[k] = tuple(_num(e, f"simulate.{k}[{i}]") for i, e in enumerate(v))
    prec = t.get("precision", "float64")
    if prec not in ("float64", "float32"):
        raise CampaignSpecError("simulate.precision", f"expected 'float64' or 'float32', got {prec!r}")
    fs = t.get("fast_step", "auto")
    if fs not in [f.value for f in FastStep]:
        raise CampaignSpecError("simulate.fast_step", f"expected one of {[f.value for f in FastStep]}, got {fs!r}")
    save_fast = t.get("save_fast", False)
    if not isinstance(save_fast, bool):
        raise CampaignSpecError("simulate.save_fast", f"expected true or false, got {save_fast!r}")
    return SimulateStep(
        t_end=_num(t["t_end"], "simulate.t_end", positive=True),
        dt=None if dt_axis else _num(t["dt"], "simulate.dt", positive=True),
        n_paths=n_paths, paths_per_task=ppt,
        save_every=None if t.get("save_every") is None else _num(t["save_every"], "simulate.save_every", positive=True),
        save_fast=save_fast, x0=vecs.get("x0"), y0=vecs.get("y0"), precision=prec, fast_step=fs,
        checkpoint_seconds=_num(t.get("checkpoint_seconds", 60.0), "simulate.checkpoint_seconds", positive=True))


def _average_step(t: dict, info) -> AverageStep:
    from dataclasses import fields

    opt_keys = {f.name for f in fields(AveragingOptions)}
    _unknown(t, opt_keys | {"x_points", "points_per_task"}, "average")
    if "x_points" not in t:
        raise CampaignSpecError("average.x_points", "missing (a list, or {start, stop, num})")
    xp = t["x_points"]
    if isinstance(xp, dict):
        _unknown(xp, {"start", "stop", "num"}, "average.x_points")
        for k in ("start", "stop", "num"):
            if k not in xp:
                raise CampaignSpecError(f"average.x_points.{k}", "missing")
        pts = np.linspace(_num(xp["start"], "average.x_points.start"), _num(xp["stop"], "average.x_points.stop"),
                          _int(xp["num"], "average.x_points.num"))
        x = tuple((float(v),) for v in pts)
    elif isinstance(xp, list) and xp:
        rows = []
        for i, r in enumerate(xp):
            r = r if isinstance(r, list) else [r]
            rows.append(tuple(_num(v, f"average.x_points[{i}]") for v in r))
        if len({len(r) for r in rows}) != 1:
            raise CampaignSpecError("average.x_points", "rows of different lengths")
        x = tuple(rows)
    else:
        raise CampaignSpecError("average.x_points", f"expected a non-empty list or {{start, stop, num}}, got {xp!r}")
    kw = {k: v for k, v in t.items() if k in opt_keys}
    if "fast_step" in kw:
        try:
            kw["fast_step"] = FastStep(kw["fast_step"])
        except ValueError:
            raise CampaignSpecError("average.fast_step", f"expected one of {[f.value for f in FastStep]}, "
                                    f"got {kw['fast_step']!r}") from None
    try:
        opts = AveragingOptions(**kw)
    except ValueError as e:
        msg = str(e)
        key = next((k for k in kw if f" {k}=" in msg), "")
        raise CampaignSpecError(f"average.{key}" if key else "average", msg) from None
    ppt = _int(t.get("points_per_task", len(x)), "average.points_per_task")
    return AverageStep(x_points=x, points_per_task=ppt, options=opts)


def _train_step(t: dict, sim: SimulateStep | None, avg: AverageStep | None) -> TrainStep:
    from dataclasses import fields

    from ..surrogate._options import SurrogateOptions  # imports torch: only for specs that train

    opt_keys = {f.name for f in fields(SurrogateOptions)} - {"seed", "progress", "threads"}
    _unknown(t, opt_keys | {"source", "eval_points"}, "train")
    src = t.get("source", "average" if avg is not None else "simulate")
    if src not in ("average", "simulate"):
        raise CampaignSpecError("train.source", f"expected 'average' or 'simulate', got {src!r}")
    if src == "average" and avg is None:
        raise CampaignSpecError("train.source", "'average' needs an [average] step")
    if src == "simulate" and (sim is None or sim.save_every is None):
        raise CampaignSpecError("train.source", "'simulate' needs a [simulate] step with save_every")
    kw = {k: v for k, v in t.items() if k in opt_keys}
    conv = dict(kw)
    if "hidden" in conv:
        conv["hidden"] = tuple(conv["hidden"]) if isinstance(conv["hidden"], list) else conv["hidden"]
    from ..surrogate._options import DiffusionForm, TrajectoryMethod

    for k, kind in (("diffusion", DiffusionForm), ("method", TrajectoryMethod)):
        if k in conv:
            try:
                conv[k] = kind(conv[k])
            except ValueError:
                raise CampaignSpecError(f"train.{k}", f"expected one of {[e.value for e in kind]}, "
                                        f"got {conv[k]!r}") from None
    try:
        SurrogateOptions(**conv)
    except (TypeError, ValueError) as e:
        msg = str(e)
        key = next((k for k in kw if k in msg), "")
        raise CampaignSpecError(f"train.{key}" if key else "train", msg) from None
    ev = t.get("eval_points")
    if ev is not None:
        if not isinstance(ev, list) or not ev:
            raise CampaignSpecError("train.eval_points", f"expected a non-empty list, got {ev!r}")
        rows = [tuple(_num(x, f"train.eval_points[{i}]") for x in (r if isinstance(r, list) else [r]))
                for i, r in enumerate(ev)]
        if len({len(r) for r in rows}) != 1:
            raise CampaignSpecError("train.eval_points", "rows of different lengths")
        ev = tuple(rows)
    return TrainStep(source=src, options=conv, eval_points=ev)


def _validate_step(t: dict, tr: TrainStep | None, info) -> ValidateStep:
    from dataclasses import fields

    from ..validate import AMSOptions, ValidationSettings

    if tr is None:
        raise CampaignSpecError("validate", "needs a [train] step (it validates the trained surrogate)")
    keys = {f.name for f in fields(ValidationSettings)} - {"seed", "threads", "eps"}
    _unknown(t, keys | {"quick"}, "validate")
    quick = t.get("quick", False)
    if not isinstance(quick, bool):
        raise CampaignSpecError("validate.quick", f"expected true or false, got {quick!r}")
    kw = {k: v for k, v in t.items() if k in keys}
    if "ams" in kw:
        if not isinstance(kw["ams"], dict):
            raise CampaignSpecError("validate.ams", f"must be a table of AMSOptions, got {kw['ams']!r}")
        _unknown(kw["ams"], {f.name for f in fields(AMSOptions)}, "validate.ams")
        try:
            kw["ams"] = AMSOptions(**kw["ams"])
        except (TypeError, ValueError) as e:
            raise CampaignSpecError("validate.ams", str(e)) from None
    for k, v in kw.items():  # ValidationSettings does not check its values itself
        if k == "ams":
            continue
        _num(v, f"validate.{k}", positive=True)
        if isinstance(getattr(ValidationSettings, k, None), int) and not isinstance(v, int):
            raise CampaignSpecError(f"validate.{k}", f"expected an integer, got {v!r}")
    try:
        (ValidationSettings.quick if quick else ValidationSettings)(**kw)
    except (TypeError, ValueError) as e:
        msg = str(e)
        key = next((k for k in kw if k in msg), "")
        raise CampaignSpecError(f"validate.{key}" if key else "validate", msg) from None
    m, _ = info.dims(info.resolve_params(None))
    if m != 1:
        raise CampaignSpecError("validate", f"validation needs one slow variable; {info.name!r} has {m}")
    return ValidateStep(settings=kw, quick=quick)
