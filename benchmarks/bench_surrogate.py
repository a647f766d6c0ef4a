"""Surrogates that pay off: the learned effective SDE in the compiled kernels against the full system.

1. **Speed-up over the full system** (reference problem 2, ``tilted_double_well``): the 1-D
   surrogate that ``multiscale run`` trains (run here first, default settings; or
   ``--run-dir`` from an earlier run), simulated in the kernel at dt = 0.01 (tables), against the
   full fast/slow system in the compiled kernel at eps = 0.03 (dt 2.5e-4) and eps = 0.01 (dt
   1e-4), 4000 paths each, measured in the same run. The figure is physical time simulated per
   second (paths x time / wall). The torch reference (``EffectiveSDE._simulate_torch``, the
   engine before the kernels) is timed beside them. The run's own validation report gives the
   accuracy at which this speed comes (invariant density and MFPTs, full system vs surrogate).
2. **The network in the kernel, no tables**: a 3-variable surrogate with 10 members of 2 x 48
   tanh layers, ``member="sample"``, ``None`` and one member, float64 and float32, path-steps per
   second against the torch reference in the same run.
3. **Estimate then train** (problem 1a): the frozen-x averaging estimator on 41 points, then a
   10-member deep ensemble (``--train`` only; the figures in the README's learning paragraph).

With a visible CUDA device the kernel rows are repeated on the GPU.

    python benchmarks/bench_surrogate.py [--threads 2] [--run-dir DIR] [--train] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import torch  # noqa: E402

import multiscale as ms  # noqa: E402
from multiscale import exact  # noqa: E402
from multiscale.surrogate import EffectiveSDEEstimator, SurrogateOptions  # noqa: E402


def estimate_then_train(threads: int, members: int, seed: int = 0) -> dict:
    t0 = time.perf_counter()
    avg = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, burn_in=10.0, time=200.0, batch=10.0),
                                seed=seed, threads=threads).fit("fast_ou_linear", np.linspace(-2.5, 2.5, 41))
    t1 = time.perf_counter()
    est = EffectiveSDEEstimator(SurrogateOptions(members=members, seed=seed, threads=threads)).fit(avg.result_)
    t2 = time.perf_counter()
    sde = est.fetch_model()
    x = np.linspace(-2, 2, 201)
    err = sde.drift(x)[:, 0] - exact.fast_ou_linear_drift(x)
    return {"members": members, "estimate_s": t1 - t0, "train_s": t2 - t1, "total_s": t2 - t0,
            "epochs": est.summary_["epochs"], "train_s_per_epoch": (t2 - t1) / est.summary_["epochs"],
            "max_drift_error": float(np.abs(err).max()),
            "coverage_2_spread": float(np.mean(np.abs(err) <= 2 * sde.drift_spread(x)[:, 0])),
            "max_diffusion_error": float(np.abs(sde.diffusion(x)[:, 0, 0] - 1).max()), "model": sde,
            "averaging": avg}


def _rate(fn, n_paths: int, t_end: float, dt: float) -> dict:
    fn(min(t_end, 20 * dt))  # warm-up: tables, caches, first-touch
    t0 = time.perf_counter()
    fn(t_end)
    wall = time.perf_counter() - t0
    return {"seconds": wall, "paths": n_paths, "t_end": t_end, "dt": dt,
            "physical_time_per_s": n_paths * t_end / wall, "path_steps_per_s": n_paths * t_end / dt / wall}


def speedup_over_full_system(sde, threads: int, devices: list[str]) -> list[dict]:
    rows = []
    n = 4000
    for eps, dt, T in ((0.03, 2.5e-4, 2.0), (0.01, 1e-4, 1.0)):
        r = _rate(lambda t, eps=eps, dt=dt: ms.simulate("tilted_double_well", eps=eps, dt=dt, t_end=t, n_paths=n,
                                                        seed=1, threads=threads), n, T, dt)
        rows.append({"case": f"full system, eps = {eps}, dt = {dt:g}", **r})
    dt = 0.01
    for dev in devices:
        for label, kw, paths, T in (("member='sample'", dict(member="sample"), n, 200.0),
                                    ("member='sample', 40 paths", dict(member="sample"), 40, 2000.0),
                                    ("member=None", dict(member=None), n, 200.0),
                                    ("member='sample', float32", dict(member="sample", precision=ms.Precision.FLOAT32),
                                     n, 200.0),
                                    ("member='sample', networks (no tables)", dict(member="sample", tables=False),
                                     n, 20.0),
                                    ("member=None, networks (no tables)", dict(member=None, tables=False), n, 5.0)):
            r = _rate(lambda t, kw=kw, paths=paths: sde.simulate(t_end=t, dt=dt, n_paths=paths, seed=1, threads=threads,
                                                                 device=dev, **kw), paths, T, dt)
            rows.append({"case": f"surrogate kernel ({dev}), {label}, dt = 0.01", **r})
    torch.set_num_threads(threads)
    for label, member, paths, T in (("member='sample'", "sample", n, 1.0), ("member=None", None, n, 0.2)):
        r = _rate(lambda t, member=member, paths=paths: sde._simulate_torch(t_end=t, dt=dt, n_paths=paths, seed=1,
                                                                            member=member), paths, T, dt)
        rows.append({"case": f"surrogate, torch reference (before), {label}, dt = 0.01", **r})
    base = {eps: next(r for r in rows if f"eps = {eps}" in r["case"])["physical_time_per_s"] for eps in (0.03, 0.01)}
    for r in rows:
        r["vs_full_eps_0.03"] = r["physical_time_per_s"] / base[0.03]
        r["vs_full_eps_0.01"] = r["physical_time_per_s"] / base[0.01]
    return rows


def network_in_kernel(threads: int, devices: list[str]) -> list[dict]:
    from multiscale.surrogate import EffectiveSDE

    sde = EffectiveSDE(3, members=10, hidden=(48, 48), seed=0)
    sde.set_scaling(x_mean=0.0, x_scale=1.0, b_mean=0.0, b_scale=1.0, s_scale=0.5, x_lo=-2.0, x_hi=2.0)
    n, dt = 4000, 0.01
    rows = []
    torch.set_num_threads(threads)
    for label, member, T in (("member='sample'", "sample", 0.5), ("member=None", None, 0.1)):
        r = _rate(lambda t, member=member: sde._simulate_torch(t_end=t, dt=dt, n_paths=n, seed=1, member=member),
                  n, T, dt)
        rows.append({"case": f"torch reference, {label}, float64", **r})
    for dev in devices:
        for label, kw, T in (("member='sample', float64", dict(member="sample"), 5.0),
                             ("member='sample', float32", dict(member="sample", precision=ms.Precision.FLOAT32), 5.0),
                             ("member=0, float32", dict(member=0, precision=ms.Precision.FLOAT32), 5.0),
                             ("member=None, float64", dict(member=None), 0.5)):
            r = _rate(lambda t, kw=kw: sde.simulate(t_end=t, dt=dt, n_paths=n, seed=1, threads=threads, device=dev,
                                                    **kw), n, T, dt)
            rows.append({"case": f"kernel ({dev}), {label}", **r})
    ref = {m: next(r for r in rows if r["case"].startswith(f"torch reference, {m}"))["path_steps_per_s"]
           for m in ("member='sample'", "member=None")}
    for r in rows:
        key = "member=None" if "member=None" in r["case"] else "member='sample'"
        r["vs_torch"] = r["path_steps_per_s"] / ref[key]
    return rows


def pipeline_run(run_dir: str | None, threads: int) -> tuple[object, dict, list[str]]:
    """The surrogate of `multiscale run` (default settings), its summary and report rows."""
    import pathlib
    import tempfile

    from multiscale.pipeline import RunConfig, run_pipeline

    if run_dir is None:
        run_dir = tempfile.mkdtemp(prefix="bench_surrogate_")
        run_pipeline(pathlib.Path(run_dir), RunConfig(threads=threads), progress=False)
    d = pathlib.Path(run_dir)
    summary = json.loads((d / "summary.json").read_text())
    report = [ln for ln in (d / "report.md").read_text().splitlines()
              if ln.startswith("|") and any(k in ln for k in ("MFPT", "TV", "density", "quantity", "timescale"))]
    return ms.load_surrogate(d / "surrogate.h5"), summary, report


def _table(rows: list[dict], cols: list[tuple[str, str, str]]) -> None:
    print(f"{'case':<66}" + "".join(f"{h:>14}" for h, _, _ in cols))
    for r in rows:
        print(f"{r['case']:<66}" + "".join(f"{format(r[k], f):>14}" for _, k, f in cols))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--run-dir", default=None, help="folder of an earlier `multiscale run` (default: run it now)")
    ap.add_argument("--train", action="store_true", help="also time estimate-then-train on problem 1a")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    out: dict = {"threads": a.threads, "torch": torch.__version__, "build": ms.build_info()}
    devices = ["cpu"] + (["cuda"] if ms.build_info()["cuda_devices"] else [])

    t0 = time.perf_counter()
    sde, summary, report = pipeline_run(a.run_dir, a.threads)
    out["pipeline"] = {"seconds": summary["seconds"], "stage_seconds": summary["stage_seconds"],
                       "checks": summary["checks"], "report_rows": report,
                       "timed_here": a.run_dir is None, "wall": time.perf_counter() - t0}
    st = summary["stage_seconds"]
    print(f"multiscale run (problem 2, default settings, {a.threads} threads): {summary['seconds']:.1f} s; "
          + ", ".join(f"{k} {v:.1f} s" for k, v in st.items()))
    print("accuracy of this surrogate (the run's validation report):")
    for ln in report:
        print("  " + ln)
    failed = [k for k, v in summary["checks"].items() if not v]
    print(f"  checks: {sum(summary['checks'].values())}/{len(summary['checks'])} passed"
          + (f"; failed: {failed}" if failed else ""))

    rows = speedup_over_full_system(sde, a.threads, devices)
    out["speedup"] = rows
    print(f"\nphysical time simulated per second, problem 2, {a.threads} threads:")
    _table(rows, [("phys. time/s", "physical_time_per_s", ".3g"), ("path-steps/s", "path_steps_per_s", ".3g"),
                  ("vs eps=0.03", "vs_full_eps_0.03", ".2f"), ("vs eps=0.01", "vs_full_eps_0.01", ".1f")])

    rows = network_in_kernel(a.threads, devices)
    out["network"] = rows
    print(f"\nnetwork in the kernel: 3 slow variables, 10 members, 2 x 48 tanh, 4000 paths, {a.threads} threads:")
    _table(rows, [("path-steps/s", "path_steps_per_s", ".3g"), ("vs torch", "vs_torch", ".1f")])

    if a.train:
        big = estimate_then_train(a.threads, 10)
        big.pop("model"), big.pop("averaging")
        out["train"] = big
        print(f"\nestimate-then-train, problem 1a, {a.threads} threads: estimate {big['estimate_s']:.2f} s + train "
              f"{big['train_s']:.1f} s ({big['epochs']} epochs, 10 members); max |b - F| {big['max_drift_error']:.4f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
