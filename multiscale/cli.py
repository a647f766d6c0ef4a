"""Command-line interface: ``multiscale models``, ``multiscale simulate``, ``multiscale average``,
``multiscale train``, ``multiscale validate``, ``multiscale run``, ``multiscale campaign``,
``multiscale info``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Sequence


def _kv(text: str) -> tuple[str, float]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--param expects NAME=VALUE, got {text!r}")
    k, v = text.split("=", 1)
    try:
        return k.strip(), float(v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--param {text!r}: {v!r} is not a number") from None


def _add_model(p: argparse.ArgumentParser, help: str, required: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=required)
    g.add_argument("--model", help=help)
    g.add_argument("--model-file", default=None, metavar="TOML",
                   help="a user model written in the model language ([model] table; see multiscale.Model)")


def _model(a: argparse.Namespace):
    """The catalogue name, or the user model read from --model-file."""
    if getattr(a, "model_file", None):
        from .models import load_model_file

        return load_model_file(a.model_file)
    return a.model


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="multiscale", description=__doc__)
    sub = ap.add_subparsers(dest="command", required=True)

    mo = sub.add_parser("models", help="list the model catalogue with parameters and defaults, or check a user "
                                       "model file (parse, compile, describe)")
    mo.add_argument("--model-file", default=None, metavar="TOML",
                    help="a user model written in the model language: parse it, compile it (or load it from "
                         "the cache) and describe it")
    sub.add_parser("info", help="print build information (compiler, OpenMP, CUDA, devices)")

    s = sub.add_parser("simulate", help="simulate an ensemble and write a netCDF4/HDF5 file")
    _add_model(s, "catalogue name (see `multiscale models`)")
    s.add_argument("--param", action="append", type=_kv, default=[], metavar="NAME=VALUE",
                   help="override a model parameter (repeatable)")
    s.add_argument("--eps", type=float, default=None, help="scale separation (model default if omitted)")
    s.add_argument("--paths", type=int, default=1000, help="number of paths")
    s.add_argument("--t-end", type=float, required=True, help="final time")
    s.add_argument("--dt", type=float, required=True, help="time step")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--save-every", type=int, default=None, help="store the state every K steps")
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    s.add_argument("--fast-step", choices=["auto", "euler", "exact_ou"], default="auto")
    s.add_argument("--float32", action="store_true", help="single-precision kernels")
    s.add_argument("--no-throw", action="store_true", help="write the file even if paths fail")
    s.add_argument("--out", required=True, help="output file (.nc)")

    a = sub.add_parser("average", help="estimate the averaged drift F(x) and effective diffusion A(x)")
    _add_model(a, "catalogue name (with explicit fast variables)")
    a.add_argument("--param", action="append", type=_kv, default=[], metavar="NAME=VALUE")
    a.add_argument("--eps", type=float, default=None, help="only for models whose functions use eps")
    a.add_argument("--points", action="append", required=True, metavar="A:B:N",
                   help="slow points: N equally spaced values in [A, B] (write --points=-2:2:50 when A < 0); repeat once per slow "
                        "variable for a tensor grid, or give one for all of them")
    a.add_argument("--dt", type=float, default=0.01, help="fast-time step")
    a.add_argument("--burn-in", type=float, default=10.0, help="fast time before averaging")
    a.add_argument("--time", type=float, default=200.0, help="averaging time per replica (per round)")
    a.add_argument("--replicas", type=int, default=16)
    a.add_argument("--batch", type=float, default=10.0, help="batch length (fast time)")
    a.add_argument("--target-stderr", type=float, default=None, help="adaptive mode: stderr to reach")
    a.add_argument("--max-time", type=float, default=None, help="adaptive budget per replica")
    a.add_argument("--fast-step", choices=["auto", "euler", "exact_ou"], default="auto")
    a.add_argument("--no-corrector", action="store_true", help="homogenization: skip the corrector drift")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--threads", type=int, default=None)
    a.add_argument("--device", default="cpu")
    a.add_argument("--out", required=True, help="output file (.nc)")

    t = sub.add_parser("train", help="learn an effective SDE (neural, deep ensemble) from estimates or trajectories")
    t.add_argument("--data", required=True, help="netCDF/HDF5 file from `average` or `simulate`")
    kind = t.add_mutually_exclusive_group(required=True)
    kind.add_argument("--from-estimates", action="store_true", help="data holds averaged estimates F, A")
    kind.add_argument("--from-trajectories", action="store_true", help="data holds slow trajectories")
    t.add_argument("--lag", type=float, default=None,
                   help="transition lag (time units) for trajectories; default: the lag rule")
    t.add_argument("--method", choices=["multiscale", "euler"], default="multiscale",
                   help="transition density for trajectories")
    t.add_argument("--variables", default=None, help="comma-separated slow variables to model")
    t.add_argument("--members", type=int, default=10, help="deep-ensemble size")
    t.add_argument("--hidden", default="48,48", help="hidden widths, comma-separated")
    t.add_argument("--diffusion", choices=["cholesky", "diagonal", "scalar"], default="cholesky")
    t.add_argument("--gradient", action="store_true", help="gradient structure (effective potential)")
    t.add_argument("--epochs", type=int, default=None, help="maximum Adam epochs / steps")
    t.add_argument("--lbfgs-steps", type=int, default=None, help="maximum L-BFGS steps after Adam")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=1,
                   help="torch intra-op threads (default 1: the cores are used across members, see --workers)")
    t.add_argument("--workers", type=int, default=2,
                   help="member groups trained at once, a thread each (trajectories; the model does not depend on it)")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.add_argument("--out", required=True, help="output surrogate file (.h5)")

    r = sub.add_parser("run", help="run the whole pipeline (simulate, estimate, learn, validate, export) on the "
                                   "built-in default problem (reference problem 2, tilted_double_well) or a "
                                   "configured one")
    r.add_argument("--out", default="multiscale-run", help="output folder")
    r.add_argument("--config", default=None, help="TOML file with a [run] table (see multiscale.pipeline.RunConfig)")
    _add_model(r, "catalogue model (one slow variable, or several: lorenz96)", required=False)
    r.add_argument("--param", action="append", type=_kv, default=[], metavar="NAME=VALUE")
    r.add_argument("--eps", type=float, default=None)
    r.add_argument("--dt", type=float, default=None)
    r.add_argument("--quick", action="store_true", help="reduced sizes (CI): same stages, wider error bars")
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--threads", type=int, default=None)

    v = sub.add_parser("validate", help="validate a learned surrogate against the full system and the exact limit")
    v.add_argument("--surrogate", required=True, help="surrogate file (.h5) from `multiscale train` or `run`")
    _add_model(v, "catalogue model of the full system (one slow variable)")
    v.add_argument("--param", action="append", type=_kv, default=[], metavar="NAME=VALUE")
    v.add_argument("--eps", type=float, default=None, help="scale separation of the full system")
    v.add_argument("--dt", type=float, default=None, help="time step of the full system")
    v.add_argument("--estimates", default=None, help="averaging estimates (.nc) to draw with the drift")
    v.add_argument("--quick", action="store_true", help="small runs (wider intervals)")
    v.add_argument("--no-surrogate-ams", action="store_true", help="skip AMS on the surrogate (committor is exact)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--threads", type=int, default=None)
    v.add_argument("--out", required=True, help="output folder (report.md, validation.nc, validation.png)")

    c = sub.add_parser("campaign", help="parameter sweeps on one process or MPI ranks (plan, run, merge, status)")
    csub = c.add_subparsers(dest="campaign_command", required=True)
    cp = csub.add_parser("plan", help="print the task list and cost estimate of a spec; runs nothing")
    cp.add_argument("spec", help="campaign spec (TOML)")
    cp.add_argument("--verbose", action="store_true", help="list every task")
    cr = csub.add_parser("run", help="run or resume a campaign (under mpiexec/srun: every rank runs this)")
    cr.add_argument("spec", help="campaign spec (TOML)")
    cr.add_argument("--out", required=True, help="campaign folder (created; an existing one is resumed)")
    cr.add_argument("--no-merge", action="store_true", help="leave merging to `campaign merge`")
    cr.add_argument("--quiet", action="store_true", help="no progress lines")
    cm = csub.add_parser("merge", help="merge a campaign folder's task results into campaign.nc")
    cm.add_argument("folder")
    cs = csub.add_parser("status", help="done, failed, checkpointed and pending tasks of a campaign folder")
    cs.add_argument("folder")
    cs.add_argument("--json", action="store_true", help="machine-readable output")
    return ap


def _cmd_campaign(a: argparse.Namespace) -> int:
    from . import campaign as cm

    if a.campaign_command == "plan":
        print(cm.format_plan(cm.load_spec(a.spec), verbose=a.verbose))
        return 0
    if a.campaign_command == "run":
        path = cm.run_campaign(a.spec, a.out, progress=not a.quiet, merge=not a.no_merge)
        if path is not None:
            print(f"wrote {path}")
        return 0
    if a.campaign_command == "merge":
        print(f"wrote {cm.merge_campaign(a.folder)}")
        return 0
    st = cm.campaign_status(a.folder)
    print(json.dumps(st, indent=1) if a.json else cm.format_status(st))
    return 0 if not st["failed"] else 1


#: printed after the catalogue: where its "exact answers" lines point
REFERENCE_NOTE = ("Exact answers: the sections of docs/reference_problems.md named above (equations, exact values "
                  "and the multiscale functions that compute them), in the source distribution and the repository; "
                  "the installed package does not include docs/.")


def _cmd_models(a: argparse.Namespace) -> int:
    from .models import get_model, list_models

    if a.model_file:
        print(get_model(_model(a)).summary())
        return 0
    for info in list_models():
        print(info.summary())
        print()
    print(REFERENCE_NOTE)
    return 0


def _cmd_info() -> int:
    from ._device import build_info

    print(json.dumps(build_info(), indent=2))
    return 0


def _cmd_simulate(a: argparse.Namespace) -> int:
    from . import FastStep, Precision, SimulationError, save_dataset, simulate

    out = Path(a.out)
    t0 = time.perf_counter()
    try:
        ds = simulate(_model(a), params=dict(a.param), eps=a.eps, n_paths=a.paths, t_end=a.t_end,
                      dt=a.dt, seed=a.seed, save_every=a.save_every, threads=a.threads,
                      device=a.device, fast_step=FastStep(a.fast_step),
                      precision=Precision.FLOAT32 if a.float32 else Precision.FLOAT64,
                      throw=not a.no_throw)
    except SimulationError as e:
        save_dataset(e.dataset, out)
        print(f"error: {e}\n(partial results with per-path status written to {out})", file=sys.stderr)
        return 3
    elapsed = time.perf_counter() - t0
    save_dataset(ds, out)
    steps = ds.attrs["n_steps"] * ds.attrs["n_paths"]
    print(f"{ds.attrs['model']}: {ds.attrs['n_paths']} paths x {ds.attrs['n_steps']} steps "
          f"in {elapsed:.2f} s ({steps / elapsed:.3g} path-steps/s); "
          f"{ds.attrs['n_failed']} failed; wrote {out}")
    return 0


def _grid(specs: list[str], m: int):
    import numpy as np

    axes = []
    for spec in specs:
        parts = spec.split(":")
        try:
            lo, hi, num = float(parts[0]), float(parts[1]), int(parts[2])
        except (ValueError, IndexError):
            raise ValueError(f"--points {spec!r} must be A:B:N (e.g. -2:2:50)") from None
        if len(parts) != 3 or num < 1 or not hi >= lo:
            raise ValueError(f"--points {spec!r} must be A:B:N with A <= B and N >= 1")
        axes.append(np.linspace(lo, hi, num))
    if len(axes) == 1:
        axes = axes * m
    if len(axes) != m:
        raise ValueError(f"--points given {len(specs)} times; the model has {m} slow variables")
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([g.ravel() for g in mesh], axis=1)


def _cmd_average(a: argparse.Namespace) -> int:
    from . import FastStep, get_model, save_dataset
    from .averaging import AveragingEstimator, AveragingOptions

    info = get_model(_model(a))
    params = dict(a.param)
    m, _ = info.dims(params)
    x = _grid(a.points, m)
    opts = AveragingOptions(dt=a.dt, burn_in=a.burn_in, time=a.time, replicas=a.replicas,
                            batch=a.batch, fast_step=FastStep(a.fast_step),
                            target_stderr=a.target_stderr, max_time=a.max_time,
                            corrector=not a.no_corrector)
    t0 = time.perf_counter()
    est = AveragingEstimator(opts, seed=a.seed, device=a.device, threads=a.threads)
    est.fit(info, x, params=params, eps=a.eps)
    ds = est.result_
    save_dataset(ds, Path(a.out))
    conv = int(ds["converged"].sum())
    print(f"{info.name}: F and A at {x.shape[0]} points in {time.perf_counter() - t0:.2f} s; "
          f"max stderr(F) {float(ds['F_stderr'].max()):.3g}; {conv}/{x.shape[0]} converged; wrote {a.out}")
    return 0


def _cmd_train(a: argparse.Namespace) -> int:
    import numpy as np

    from .io import open_dataset
    from .surrogate import (DiffusionForm, EffectiveSDEEstimator, SurrogateOptions, TrajectoryMethod,
                            save_surrogate)

    path = Path(a.data)
    if not path.exists():
        raise ValueError(f"--data {a.data!r}: no such file")
    ds = open_dataset(path)
    has_est, has_traj = "F" in ds and "A" in ds, "trajectory" in ds
    if a.from_estimates and not has_est:
        raise ValueError(f"--from-estimates: {a.data!r} holds no averaged estimates (F, A); "
                         "it was written by `multiscale " + ("simulate`" if has_traj else "?`"))
    if a.from_trajectories and not has_traj:
        raise ValueError(f"--from-trajectories: {a.data!r} holds no trajectory variable")
    if a.from_estimates and a.lag is not None:
        raise ValueError("--lag applies to --from-trajectories only")
    try:
        hidden = tuple(int(h) for h in a.hidden.split(","))
    except ValueError:
        raise ValueError(f"--hidden {a.hidden!r} must be comma-separated integers") from None
    kw = {k: v for k, v in (("epochs", a.epochs), ("lbfgs_steps", a.lbfgs_steps)) if v is not None}
    opts = SurrogateOptions(members=a.members, hidden=hidden, diffusion=DiffusionForm(a.diffusion),
                            gradient=a.gradient, method=TrajectoryMethod(a.method), seed=a.seed,
                            threads=a.threads, workers=a.workers, progress=not a.quiet, **kw)
    variables = None if a.variables is None else [v.strip() for v in a.variables.split(",")]
    t0 = time.perf_counter()
    est = EffectiveSDEEstimator(opts).fit(path, lag=a.lag, variables=variables)
    model = est.fetch_model()
    out = save_surrogate(model, Path(a.out))
    s = est.summary_
    x = np.linspace(model.x_lo.numpy(), model.x_hi.numpy(), 5)
    print(f"trained {model.members}-member effective SDE for {list(model.names)} from {s['pathway']} "
          f"({s['epochs']} epochs, {time.perf_counter() - t0:.1f} s)"
          + (f", lag {s['lag']:.4g} ({s['method']})" if s["pathway"] == "trajectories" else ""))
    print(f"{'x':>24}{'drift':>24}{'+- spread':>12}{'diffusion A':>24}")
    b, sp, A = model.drift(x), model.drift_spread(x), model.diffusion(x)
    for i in range(x.shape[0]):
        print(f"{np.array2string(x[i], precision=3):>24}{np.array2string(b[i], precision=4):>24}"
              f"{float(sp[i].max()):>12.3g}{np.array2string(np.diagonal(A[i]), precision=4):>24}")
    print(f"wrote {out}")
    return 0


def _cmd_run(a: argparse.Namespace) -> int:
    from .pipeline import DEFAULT_MODEL, RunConfig, run_pipeline

    over = {"model": _model(a), "eps": a.eps, "dt": a.dt, "seed": a.seed, "threads": a.threads}
    if a.param:
        over["params"] = dict(a.param)
    if a.quick:
        over["quick"] = True
    cfg = RunConfig.from_toml(a.config, **over) if a.config is not None else \
        RunConfig.for_model(over.pop("model") or DEFAULT_MODEL, quick=bool(over.pop("quick", False)),
                            **{k: v for k, v in over.items() if v is not None})
    return run_pipeline(Path(a.out), cfg)


def _cmd_validate(a: argparse.Namespace) -> int:
    from .io import open_dataset
    from .validate import ValidationSettings, validate

    if not Path(a.surrogate).is_file():
        raise ValueError(f"--surrogate {a.surrogate!r}: no such file")
    kw = {k: v for k, v in (("eps", a.eps), ("dt", a.dt)) if v is not None}
    settings = (ValidationSettings.quick if a.quick else ValidationSettings)(
        seed=a.seed, threads=a.threads, ams_surrogate=not a.no_surrogate_ams, **kw)
    est = None
    if a.estimates is not None:
        if not Path(a.estimates).is_file():
            raise ValueError(f"--estimates {a.estimates!r}: no such file")
        est = open_dataset(a.estimates)
    rep = validate(a.surrogate, _model(a), params=dict(a.param) or None, settings=settings, estimates=est,
                   out=Path(a.out))
    print(rep.markdown)
    print(f"written: {', '.join(rep.files)}")
    return 0 if rep.passed else 1


def main(argv: Sequence[str] | None = None) -> int:
    from ._errors import CampaignError

    ap = _parser()
    a = ap.parse_args(argv)
    try:
        if a.command == "models":
            return _cmd_models(a)
        if a.command == "info":
            return _cmd_info()
        if a.command == "simulate":
            return _cmd_simulate(a)
        if a.command == "average":
            return _cmd_average(a)
        if a.command == "train":
            return _cmd_train(a)
        if a.command == "run":
            return _cmd_run(a)
        if a.command == "validate":
            return _cmd_validate(a)
        if a.command == "campaign":
            return _cmd_campaign(a)
    except CampaignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return 1  # pragma: no cover


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
