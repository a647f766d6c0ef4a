"""Drift evaluations per second: the exported C++ evaluator against the PyTorch module.

Builds a surrogate of the size the learning layer trains by default (10 members, 2 x 48 tanh,
one slow variable; random weights: the cost does not depend on their values), exports it to
the portable format and to TorchScript, and times on the same CPU, in the same run:

* ``C++ single``: the header-only evaluator, one state per call (``Surrogate::drift``);
* ``C++ batch``: ``drift_batch`` over N states;
* ``TorchScript single`` / ``batch``: the exported torch module (the route PyTorch, libtorch
  and FTorch users take), one state per call and one call for N states, with 1 torch thread;
* ``Python EffectiveSDE.drift``: the model itself, batched, 1 torch thread.

Ratios are against TorchScript single (the baseline), best of --repeats.

    python benchmarks/bench_export.py [--states 20000] [--repeats 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import torch  # noqa: E402

import multiscale.export as ex  # noqa: E402
from multiscale.surrogate import EffectiveSDE  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--states", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    sde = EffectiveSDE(1, members=10, hidden=(48, 48), seed=0)
    sde.set_scaling(0.0, 1.2, 0.0, 4.0, 1.0)
    tmp = Path(tempfile.mkdtemp())
    mss = ex.export_surrogate(sde, tmp / "s.mss")
    exe = tmp / "bench_eval"
    subprocess.run(["g++", "-std=c++17", "-O3", "-I", ex.get_include(),
                    os.path.join(_ROOT, "benchmarks", "bench_export_eval.cpp"), "-o", str(exe)], check=True)
    n = a.states
    r = subprocess.run([str(exe), str(mss), str(n), str(a.repeats)], capture_output=True, text=True, check=True)
    vals = {line.split()[0]: float(line.split()[1]) for line in r.stdout.splitlines()}
    rows = [("C++ evaluator, single state per call", vals["single"]),
            ("C++ evaluator, batch", vals["batch"])]
    x = torch.as_tensor(np.random.default_rng(1).uniform(-2, 2, (n, 1)))
    ts = torch.jit.load(str(ex.export_torchscript(sde, tmp / "s.pt")))
    n_single = min(n, 2000)
    best_s = best_b = best_p = 0.0
    with torch.no_grad():
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            for i in range(n_single):
                ts.drift(x[i:i + 1])
            best_s = max(best_s, n_single / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            ts.drift(x)
            best_b = max(best_b, n / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            sde.drift(x)
            best_p = max(best_p, n / (time.perf_counter() - t0))
    rows += [("TorchScript module, single state per call (baseline)", best_s),
             ("TorchScript module, batch", best_b), ("Python EffectiveSDE.drift, batch", best_p)]
    print(f"drift evaluations/s, 10-member 2x48 surrogate, 1 slow variable, {n} states, 1 thread")
    print(f"{'case':<56}{'evals/s':>12}{'ratio':>10}")
    for name, v in rows:
        print(f"{name:<56}{v:>12.3g}{v / best_s:>10.2f}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"states": n, "rows": [{"case": c, "evals_per_s": v, "vs_torchscript_single": v / best_s}
                                            for c, v in rows]}, f, indent=2)


if __name__ == "__main__":
    main()
