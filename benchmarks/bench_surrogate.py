"""Learning layer: estimate-then-train wall time on problem 1a, and surrogate simulation speed.

1. **Estimate then train** (reference problem 1a, ``fast_ou_linear``): the frozen-x averaging
   estimator on 41 points in [-2.5, 2.5] (200 fast-time units x 16 replicas per point), then a
   10-member deep ensemble (2 x 48 tanh, Adam 1500 epochs with early stopping + L-BFGS), on
   ``--threads`` threads (default 2). Target: under 60 s together. The same run trains a
   2-member ensemble with the same settings: the ratio of the per-epoch costs shows what the
   batched ensemble costs over a small one. The accuracy reached is printed beside the times.
2. **Surrogate simulation** (Euler-Maruyama in torch, float64): path-steps per second for
   ``member="sample"`` (one network evaluation per path and step), ``member=None`` (the
   ensemble mean: every member at every path) and one member, against two baselines measured
   in the same run: a vectorised NumPy Euler loop of the closed-form averaged SDE
   ``dX = (1.5 X - X^3) dt + dW`` (what the surrogate stands in for), and the compiled
   macro-solver (``AveragedSDE.simulate``, piecewise-linear tables in the C++ kernels). With a
   visible CUDA device the surrogate is also timed on the GPU.

    python benchmarks/bench_surrogate.py [--threads 2] [--paths 20000] [--steps 200] [--json out.json]
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


def numpy_euler(n_paths: int, n_steps: int, dt: float) -> float:
    rng = np.random.default_rng(0)
    x = np.zeros(n_paths)
    xi = np.empty(n_paths)
    sq = np.sqrt(dt)
    t0 = time.perf_counter()
    for _ in range(n_steps):
        rng.standard_normal(out=xi)
        x += (1.5 * x - x**3) * dt + sq * xi
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--paths", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    out: dict = {"threads": a.threads, "torch": torch.__version__, "build": ms.build_info()}

    big = estimate_then_train(a.threads, 10)
    small = estimate_then_train(a.threads, 2)
    sde = big.pop("model")
    avg = big.pop("averaging")
    small.pop("model"), small.pop("averaging")
    out["train"] = {"members_10": big, "members_2": small,
                    "per_epoch_cost_ratio_10_vs_2": big["train_s_per_epoch"] / small["train_s_per_epoch"]}
    print(f"estimate-then-train, problem 1a, {a.threads} threads: estimate {big['estimate_s']:.2f} s + train "
          f"{big['train_s']:.1f} s ({big['epochs']} epochs, 10 members) = {big['total_s']:.1f} s (target < 60 s)")
    print(f"  accuracy: max |b - F| {big['max_drift_error']:.4f} (target 0.03), max |A - 1| "
          f"{big['max_diffusion_error']:.1e}, exact F inside 2 spread at {100 * big['coverage_2_spread']:.0f}%")
    print(f"  per-epoch cost 10 members / 2 members: {out['train']['per_epoch_cost_ratio_10_vs_2']:.2f}x "
          f"(5x the members)")

    n, k, dt = a.paths, a.steps, 0.01
    t_np = numpy_euler(n, k, dt)
    macro = avg.fetch_model()
    t0 = time.perf_counter()
    macro.simulate(t_end=k * dt, dt=dt, n_paths=n, seed=1, threads=a.threads)
    t_macro = time.perf_counter() - t0
    rows = [("numpy Euler, closed-form drift (baseline)", t_np), ("compiled macro-solver (tables)", t_macro)]
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    for dev in devices:
        for member in ("sample", 0, None):
            sde.simulate(t_end=5 * dt, dt=dt, n_paths=n, seed=1, member=member, device=dev)  # warm-up
            t0 = time.perf_counter()
            sde.simulate(t_end=k * dt, dt=dt, n_paths=n, seed=1, member=member, device=dev)
            rows.append((f"surrogate {dev}, member={member!r}", time.perf_counter() - t0))
        sde.to("cpu")
    print(f"\nsimulation, {n} paths x {k} steps, {a.threads} threads:")
    print(f"{'case':<46}{'path-steps/s':>14}{'vs numpy':>10}")
    out["simulate"] = []
    for name, t in rows:
        rate = n * k / t
        out["simulate"].append({"case": name, "seconds": t, "path_steps_per_s": rate, "vs_numpy": t_np / t})
        print(f"{name:<46}{rate:>14.3g}{t_np / t:>10.3f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2, default=str)


if __name__ == "__main__":
    main()
