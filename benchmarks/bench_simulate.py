"""Throughput of the compiled simulation kernel on reference problem 1a.

Times path-steps per second for eps = 0.01, dt = 1e-4, 1e5 paths x 1e3 steps, float64, on 1
thread and on all threads, beside a well-written NumPy vectorised Euler-Maruyama of the same
problem (preallocated buffers, in-place operations, Generator.standard_normal(out=...)) timed
in the same run, and the ceiling: the kernel's own normal-variate generator alone (same calls,
no SDE arithmetic). Ratios, not absolute numbers, are the figures to compare across machines.

    python benchmarks/bench_simulate.py [--paths 100000] [--steps 1000] [--repeats 7] [--json out.json]

With a visible CUDA device, it also reports GPU path-steps/s (float32 and float64) and the
ratio to the all-thread CPU figure.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np

import multiscale as ms
from multiscale import _core

EPS, DT, C, SIGMA = 0.01, 1e-4, 0.5, 1.0


def numpy_em(n_paths: int, n_steps: int, seed: int = 0) -> np.ndarray:
    """Euler-Maruyama for problem 1a, vectorised over paths, no allocation in the loop."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n_paths)
    y = np.zeros(n_paths)
    zx = np.empty(n_paths)
    zy = np.empty(n_paths)
    t1 = np.empty(n_paths)
    t2 = np.empty(n_paths)
    sx, sy, dte = SIGMA * np.sqrt(DT), np.sqrt(2 * DT / EPS), DT / EPS
    for _ in range(n_steps):
        rng.standard_normal(out=zx)
        rng.standard_normal(out=zy)
        # t1 = f(x, y) dt = (x - x^3 + c y) dt
        np.multiply(x, x, out=t1)
        np.multiply(t1, x, out=t1)
        np.subtract(x, t1, out=t1)
        np.multiply(y, C, out=t2)
        np.add(t1, t2, out=t1)
        np.multiply(t1, DT, out=t1)
        # t2 = g(x, y) dt/eps = (x - y) dt/eps   (uses the old x)
        np.subtract(x, y, out=t2)
        np.multiply(t2, dte, out=t2)
        # x += t1 + sigma sqrt(dt) zx ;  y += t2 + sqrt(2 dt/eps) zy
        np.multiply(zx, sx, out=zx)
        np.add(x, t1, out=x)
        np.add(x, zx, out=x)
        np.multiply(zy, sy, out=zy)
        np.add(y, t2, out=y)
        np.add(y, zy, out=y)
    return x


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--paths", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()
    n, k = a.paths, a.steps
    work = n * k
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = ms.build_info()

    def kernel(threads: int, precision=ms.Precision.FLOAT64) -> None:
        ms.simulate("fast_ou_linear", eps=EPS, dt=DT, t_end=k * DT, n_paths=n, seed=1,
                    threads=threads, save_times=[], fast_step=ms.FastStep.EULER, precision=precision)

    cases = {
        "numpy_1thread": lambda: numpy_em(n, k),
        "kernel_1thread": lambda: kernel(1),
        f"kernel_{ncpu}threads": lambda: kernel(ncpu),
        "kernel_float32_1thread": lambda: kernel(1, ms.Precision.FLOAT32),
        "normals_only_1thread": lambda: _core.normals_probe(n_paths=n, n_steps=k, per_step=2, seed=1, threads=1,
                                                            single=False),
        f"normals_only_{ncpu}threads": lambda: _core.normals_probe(n_paths=n, n_steps=k, per_step=2, seed=1,
                                                                   threads=ncpu, single=False),
    }
    # Interleave the cases within each repeat, so that a noisy neighbour slows all of them alike,
    # and report the median over repeats of each paired ratio (robust on shared machines).
    times: dict[str, list[float]] = {key: [] for key in cases}
    kernel(1)  # warm-up (page faults, thread pool)
    for _ in range(a.repeats):
        for key, fn in cases.items():
            times[key].append(timed(fn))
    rows = {key: work / min(v) for key, v in times.items()}

    def ratio(num: str, den: str) -> float:
        return float(np.median(np.asarray(times[den]) / np.asarray(times[num])))

    ratios = {
        "kernel_1thread / numpy": ratio("kernel_1thread", "numpy_1thread"),
        f"kernel_{ncpu}threads / kernel_1thread": ratio(f"kernel_{ncpu}threads", "kernel_1thread"),
        f"normals_only_{ncpu}threads / normals_only_1thread":
            ratio(f"normals_only_{ncpu}threads", "normals_only_1thread"),
        "kernel_1thread / normals_only_1thread (fraction of ceiling)":
            ratio("kernel_1thread", "normals_only_1thread"),
        "kernel_float32 / kernel_float64 (1 thread)": ratio("kernel_float32_1thread", "kernel_1thread"),
    }
    if info["cuda_devices"] > 0:
        p = np.array([C, SIGMA])
        big_n, big_k = 1 << 22, 2000
        for prec, single in (("float32", True), ("float64", False)):
            kw = dict(model_id=0, params=p, eps=EPS, dt=DT, n_paths=big_n, seed=1, exact_ou=False, single=single,
                      device=0)
            _core.cuda_time_kernel(n_steps=10, **kw)  # warm-up
            secs = _core.cuda_time_kernel(n_steps=big_k, **kw)
            rows[f"gpu_{prec}"] = big_n * big_k / secs
        ratios["gpu_float64 / cpu_all_threads"] = rows["gpu_float64"] / rows[f"kernel_{ncpu}threads"]
        ratios["gpu_float32 / cpu_all_threads"] = rows["gpu_float32"] / rows[f"kernel_{ncpu}threads"]

    print(f"problem 1a, eps={EPS}, dt={DT}, {n} paths x {k} steps, {a.repeats} interleaved repeats "
          f"(throughput: best; ratios: median of paired ratios); "
          f"{info['compiler']}, {info['cxx_flags']}, simd {info['simd']}, {ncpu} cores")
    print(f"{'case':<34}{'path-steps/s':>14}")
    for key, v in rows.items():
        print(f"{key:<34}{v:>14.3e}")
    print()
    for key, v in ratios.items():
        print(f"{key:<62}{v:>8.2f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "ratios": ratios, "build_info": info}, fh, indent=2)


if __name__ == "__main__":
    main()
