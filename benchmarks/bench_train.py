"""Training from trajectories: time, throughput and behaviour beside other work.

Data: reference problem 1a (``fast_ou_linear``, eps = 0.01) full-system paths sampled every 0.02,
sized to 1e5 and 1e6 transition pairs (the default two-lag MULTISCALE likelihood takes a pair at
the lag and one at twice the lag from every start time). For 2 and 10 ensemble members:

* **today's trainer** (the settings before this change: float64, second-order moments on every
  step, batches of 8192, torch's intra-op threads, the tanh jets in torch operations): the rate of a fixed number of Adam steps,
  projected to the default 1500 steps (a full fit takes an hour here);
* **the new trainer** (the defaults: float32, Euler warm-up for half the steps, batches of 2048,
  the fused tanh jet, one torch thread, member groups in lock-step on ``workers=2`` threads),
  and the same on one thread (``workers=1``): whole fits, with their drift and diffusion errors
  against the exact averaged coefficients (1.5 x - x^3 and 1). The two give the same model.

The figure is sample-members per second (pairs x members / fit time). Last, the ratio of a
fit's time beside one CPU-bound process to its time alone, for the new trainer (two workers and
one) and for the old threading (all measured in the same run: the machines are shared and noisy).

    python benchmarks/bench_train.py [--epochs 1500] [--old-steps 20] [--pairs 100000 1000000]
                                     [--members 2 10] [--load yes|no|only] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
import warnings

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import multiscale as ms  # noqa: E402
from multiscale import exact  # noqa: E402
from multiscale.surrogate import EffectiveSDEEstimator, SurrogateOptions, _model  # noqa: E402

H = 0.02
OLD = dict(precision=ms.Precision.FLOAT64, euler_warmup=0.0, batch_size=8192, threads=None, workers=1)


def data(n_pairs: int, seed: int = 5) -> np.ndarray:
    """Problem 1a paths with n_pairs transition pairs at lags h and 2h (32 paths)."""
    P = 32
    T = n_pairs // (2 * P) + 2
    ds = ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=(T - 1) * H, n_paths=P, seed=seed,
                     save_every=20)
    return ds.trajectory.sel(state=["x"]).values


def fit(arr: np.ndarray, old_jets: bool = False, **kw) -> tuple[float, EffectiveSDEEstimator]:
    """A fit and its seconds; ``old_jets``: the tanh jets in torch operations, as before the
    fused kernel."""
    fused = _model.tanh_jet
    if old_jets:
        _model.tanh_jet = _model.tanh_jet_torch
    try:
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ms.LagWarning)
            est = EffectiveSDEEstimator(SurrogateOptions(**kw)).fit(arr, dt=H, variables=["x"])
        return time.perf_counter() - t, est
    finally:
        _model.tanh_jet = fused


def errors(est: EffectiveSDEEstimator) -> tuple[float, float]:
    x = np.linspace(-1.5, 1.5, 31)
    sde = est.fetch_model()
    b = sde.drift(x)[:, 0] - exact.fast_ou_linear_drift(x)
    return float(np.sqrt(np.mean(b**2))), float(np.max(np.abs(sde.diffusion(x)[:, 0, 0] - 1.0)))


HOG = "import time\nt = time.time()\nwhile time.time() - t < 3600: pass\n"


def beside_a_hog(fn):
    """fn() run beside one CPU-bound process (started first, killed after)."""
    hog = subprocess.Popen([sys.executable, "-c", HOG])
    try:
        time.sleep(0.5)
        return fn()
    finally:
        hog.kill()
        hog.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1500, help="Adam steps of the new trainer's fits")
    ap.add_argument("--old-steps", type=int, default=20, help="steps timed for today's trainer")
    ap.add_argument("--pairs", type=int, nargs="*", default=[100_000, 1_000_000], help="data sizes")
    ap.add_argument("--members", type=int, nargs="*", default=[2, 10], help="ensemble sizes")
    ap.add_argument("--load", choices=("yes", "no", "only"), default="yes",
                    help="the beside-a-CPU-bound-process part")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    out: dict = {"epochs": a.epochs, "rows": []}
    print(f"# training from trajectories (problem 1a, eps 0.01, h {H}); {os.cpu_count()} CPUs\n")
    print("| pairs | members | trainer | fit seconds | sample-members/s | drift rms err | max diffusion err |")
    print("|---|---|---|---|---|---|---|")
    for n_pairs in (a.pairs if a.load != "only" else []):
        arr = data(n_pairs)
        for members in a.members:
            secs, est = fit(arr, members=members, epochs=a.old_steps, patience=0, old_jets=True, **OLD)
            old_full = secs / a.old_steps * 1500  # Adam steps dominate; projected to the defaults
            pairs = est.summary_["n_pairs"]
            row_old = {"pairs": pairs, "members": members, "trainer": "today (projected)",
                       "seconds": old_full, "rate": pairs * members / old_full}
            rows = [row_old]
            for workers in (2, 1):
                secs, est = fit(arr, members=members, epochs=a.epochs, workers=workers)
                drift_err, diff_err = errors(est)
                rows.append({"pairs": pairs, "members": members, "trainer": f"new, workers={workers}",
                             "seconds": secs, "rate": pairs * members / secs, "epochs_run": est.summary_["epochs"],
                             "drift_rms_error": drift_err, "diffusion_max_error": diff_err})
            for r in rows:
                err = (f"{r['drift_rms_error']:.3f} | {r['diffusion_max_error']:.3f}" if "drift_rms_error" in r
                       else "- | -")
                print(f"| {r['pairs']:.2g} | {members} | {r['trainer']} | {r['seconds']:.1f} | {r['rate']:.3g} | {err} |")
            print(f"| | | speed-up (workers=2) | {row_old['seconds'] / rows[1]['seconds']:.1f}x | | | |")
            out["rows"] += rows
    # Beside one CPU-bound process: the new trainer (one thread) and the old threading.
    if a.load == "no":
        return _dump(a, out)
    arr = data(100_000)
    print("\n| trainer | alone (s) | beside one CPU-bound process (s) | ratio |")
    print("|---|---|---|---|")
    for label, kw in (("new (workers=2, the default)", dict(members=10, epochs=300)),
                      ("new, one thread (workers=1)", dict(members=10, epochs=300, workers=1)),
                      ("torch threads (threads=None, workers=1)",
                       dict(members=10, epochs=300, threads=None, workers=1))):
        alone, _ = fit(arr, **kw)
        busy, _ = beside_a_hog(lambda: fit(arr, **kw))
        print(f"| {label} | {alone:.1f} | {busy:.1f} | {busy / alone:.2f} |")
        out.setdefault("load", []).append({"trainer": label, "alone": alone, "busy": busy})
    _dump(a, out)


def _dump(a: argparse.Namespace, out: dict) -> None:
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
