"""Time to estimate the averaged drift F on reference problem 2 to standard error 0.005.

Problem 2 (``tilted_double_well``, a0 = 0.1, lam = 1.5): at a frozen slow state x the fast
process runs in fast time, dY = -(Y^3 - Y - lam x) dtau + sqrt(2) dW (Euler-Maruyama), and the
averaged drift is F(x) = E[a0 - x + lam Y], with a batch-means standard error.

Both implementations run the same estimator with the same settings, in fixed (non-adaptive)
mode: every point gets R replicas, a burn-in, then the averaging time in batches, at
x in linspace(-3, 3, points):

  * the package, ``AveragingEstimator(...).fit("tilted_double_well", x)``, on 1 and 2 threads;
  * ``numpy_estimate``: a vectorised NumPy version (all points x replicas as one array,
    preallocated buffers, in-place operations, ``Generator.standard_normal(out=...)``, batch
    means streamed) on 1 thread.

The full settings (dt 0.01, burn-in 20, batch 20 >= 5 tau_int, 100 replicas x 3000 fast-time
units per point) give stderr <= 0.005 at the hardest points (x near 0, tau_int ~ 1.2). Running
them in full takes minutes per case, so by default the averaging time is cut to --scale of it
(rounded to whole batches) and the times are extrapolated linearly in the steps per replica
(burn-in + averaging) and the stderrs as 1/sqrt(averaging time); --scale 1 measures the full
run. NumPy can be run on a subset of the points (--numpy-points), its time then extrapolated
linearly in the number of points. The header says which. Cases are interleaved within each
repeat; throughput is the best repeat, ratios the median of the paired ratios. The script also
checks that NumPy and package agree: |F_np - F_pkg| < 4 sqrt(se_np^2 + se_pkg^2) at every
common point.

    python benchmarks/bench_average.py [--points 1000] [--scale 0.016] [--numpy-points N]
                                       [--repeats 3] [--json out.json]

With a visible CUDA device it also times device="cuda" (full settings when a scaled trial
predicts under a minute, else scaled and extrapolated alike).
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

# Benchmark the source tree this script lives in when it holds a built extension (in-place
# build), rather than whatever copy is installed.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import multiscale as ms  # noqa: E402
from multiscale.averaging import AveragingEstimator, AveragingOptions  # noqa: E402

MODEL, A0, LAM = "tilted_double_well", 0.1, 1.5
DT, BURN, BATCH, REPLICAS, TIME = 0.01, 20.0, 20.0, 100, 3000.0
TARGET_SE = 0.005
THREADS = 2


def numpy_estimate(x_points, dt: float, burn_steps: int, steps: int, replicas: int, batch_len: int,
                   seed: int = 0, a0: float = A0, lam: float = LAM) -> tuple[np.ndarray, np.ndarray]:
    """The package's frozen-x estimator for problem 2, vectorised over points x replicas.

    Every (point, replica) path starts at the model's initial fast state y = 0, runs
    ``burn_steps`` Euler-Maruyama steps, then ``steps`` more (a multiple of ``batch_len``),
    accumulating f = a0 - x + lam y after each step into batch sums. Returns per point the
    mean F (= mean of all batch means) and the batch-means standard error
    sqrt(var(batch means) / n_batches), the batch means pooled over replicas.
    """
    if steps % batch_len:
        raise ValueError("steps must be a multiple of batch_len")
    x = np.asarray(x_points, dtype=float).ravel()
    M, R = x.size, replicas
    n = M * R
    rng = np.random.default_rng(seed)
    y = np.zeros(n)
    t = np.empty(n)
    z = np.empty(n)
    shift = np.repeat(lam * dt * x, R)  # the tilt lam x dt of each path
    s, one_dt = math.sqrt(2.0 * dt), 1.0 + dt
    bsum = np.zeros(n)  # sum of y over the open batch
    bm_sum = np.zeros(n)  # per-path sums of batch means of f and of their squares
    bm_sumsq = np.zeros(n)
    fx = np.repeat(a0 - x, R)

    inv = lam / batch_len
    for k in range(burn_steps + steps):
        # y <- y + dt (y - y^3 + lam x) + sqrt(2 dt) z  =  y (1 + dt - dt y^2) + lam x dt + s z
        np.multiply(y, y, out=t)
        t *= -dt
        t += one_dt
        y *= t
        rng.standard_normal(out=z)
        z *= s
        y += z
        y += shift
        if k < burn_steps:
            continue
        bsum += y
        if (k - burn_steps + 1) % batch_len == 0:  # close the batch: its mean of f = a0 - x + lam mean(y)
            bsum *= inv
            bsum += fx
            bm_sum += bsum
            np.multiply(bsum, bsum, out=t)
            bm_sumsq += t
            bsum[:] = 0.0
    nb = float(R * (steps // batch_len))
    S1 = bm_sum.reshape(M, R).sum(axis=1)
    S2 = bm_sumsq.reshape(M, R).sum(axis=1)
    F = S1 / nb
    var = np.maximum(S2 - nb * F**2, 0.0) / (nb - 1)
    return F, np.sqrt(var / nb)


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=1000, help="slow states, linspace(-3, 3, points)")
    ap.add_argument("--scale", type=float, default=0.016,
                    help="fraction of the full averaging time run (rounded to whole batches); 1 = full")
    ap.add_argument("--numpy-points", type=int, default=None,
                    help="run NumPy on this many evenly spaced points of the grid (default: all)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the figures to this file")
    a = ap.parse_args()
    if a.points < 2 or not 0 < a.scale <= 1 or a.repeats < 1:
        ap.error("need --points >= 2, 0 < --scale <= 1, --repeats >= 1")
    info = ms.build_info()
    ncpu = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()

    x = np.linspace(-3.0, 3.0, a.points)
    n_np = a.points if a.numpy_points is None else max(2, min(a.numpy_points, a.points))
    idx = np.unique(np.round(np.linspace(0, a.points - 1, n_np)).astype(int))
    n_np = idx.size
    burn_steps, batch_len = round(BURN / DT), round(BATCH / DT)
    full_steps = round(TIME / DT)
    t_run = max(1, round(a.scale * TIME / BATCH)) * BATCH
    run_steps = round(t_run / DT)
    eff_scale = t_run / TIME
    t_factor = (burn_steps + full_steps) / (burn_steps + run_steps)  # time extrapolation
    se_factor = math.sqrt(t_run / TIME)                               # stderr extrapolation
    pt_factor = a.points / n_np                                       # NumPy points extrapolation
    work_full = a.points * REPLICAS * (burn_steps + full_steps)       # path-steps of the task
    work_run = a.points * REPLICAS * (burn_steps + run_steps)

    def opts(t: float) -> AveragingOptions:
        return AveragingOptions(dt=DT, burn_in=BURN, time=t, replicas=REPLICAS, batch=BATCH,
                                target_stderr=None)

    def package(threads: int | None, device: str = "cpu", t: float = t_run):
        est = AveragingEstimator(opts(t), seed=a.seed, device=device, threads=threads)
        return est.fit(MODEL, x, params={"a0": A0, "lam": LAM}).result_

    cases = {
        "numpy_1thread": lambda: numpy_estimate(x[idx], DT, burn_steps, run_steps, REPLICAS, batch_len,
                                                seed=a.seed),
        "package_1thread": lambda: package(1),
        f"package_{THREADS}threads": lambda: package(THREADS),
    }
    # Interleave the cases within each repeat, so that a noisy neighbour slows all of them alike.
    AveragingEstimator(opts(BATCH), threads=THREADS).fit(MODEL, x[:8])  # warm-up
    times: dict[str, list[float]] = {k: [] for k in cases}
    last: dict[str, object] = {}
    for _ in range(a.repeats):
        for key, fn in cases.items():
            secs, last[key] = timed(fn)
            times[key].append(secs)
    # Extrapolated wall time of the full task (all points, full averaging time).
    scale_of = {k: t_factor * (pt_factor if k.startswith("numpy") else 1.0) for k in cases}
    full_s = {k: min(v) * scale_of[k] for k, v in times.items()}
    rows = {k: work_full / s for k, s in full_s.items()}

    def ratio(num: str, den: str) -> float:
        return float(np.median(np.asarray(times[den]) * scale_of[den]
                               / (np.asarray(times[num]) * scale_of[num])))

    ratios = {
        f"package_{THREADS}threads / numpy_1thread (target >= 4)": ratio(f"package_{THREADS}threads", "numpy_1thread"),
        "package_1thread / numpy_1thread": ratio("package_1thread", "numpy_1thread"),
        f"package_{THREADS}threads / package_1thread": ratio(f"package_{THREADS}threads", "package_1thread"),
    }

    F_np, se_np = last["numpy_1thread"]
    res = last[f"package_{THREADS}threads"]
    F_pk, se_pk = res.F.values[:, 0], res.F_stderr.values[:, 0]
    tau = res.tau_int.values[:, 0]
    z = np.abs(F_np - F_pk[idx]) / np.sqrt(se_np**2 + se_pk[idx] ** 2)
    check = {"points": int(n_np), "max_z": float(z.max()), "x_at_max_z": float(x[idx][z.argmax()]),
             "mean_z2": float(np.mean(z**2)), "pass": bool(np.all(z < 4.0))}
    se = {"package_max_stderr_run": float(se_pk.max()), "numpy_max_stderr_run": float(se_np.max()),
          "package_max_stderr_full": float(se_pk.max() * se_factor),
          "numpy_max_stderr_full": float(se_np.max() * se_factor),
          "max_tau_int": float(tau.max()), "x_at_max_tau_int": float(x[tau.argmax()]),
          "batch_over_max_tau_int": float(BATCH / tau.max()),
          "package_converged_fraction": float(res.converged.values.mean())}

    gpu: dict[str, float] = {}
    if info["cuda_devices"] > 0:
        package(None, "cuda")  # warm-up (context, module load)
        trial, _ = timed(lambda: package(None, "cuda"))
        full_gpu = trial * t_factor < 60.0
        g_t = TIME if full_gpu else t_run
        g_factor = 1.0 if full_gpu else t_factor
        g_times = []
        for _ in range(a.repeats):
            secs, g_res = timed(lambda: package(None, "cuda", g_t))
            g_times.append(secs)
        gse = g_res.F_stderr.values[:, 0]
        gz = np.abs(g_res.F.values[idx, 0] - F_np) / np.sqrt(gse[idx] ** 2 + se_np**2)
        gpu = {"gpu_seconds_full_task": min(g_times) * g_factor, "gpu_measured_full": float(full_gpu),
               "gpu_max_stderr": float(gse.max() * (1.0 if full_gpu else se_factor)),
               "gpu_vs_numpy_max_z": float(gz.max())}
        rows["package_gpu"] = work_full / gpu["gpu_seconds_full_task"]
        full_s["package_gpu"] = gpu["gpu_seconds_full_task"]
        ratios[f"package_gpu / package_{THREADS}threads"] = full_s[f"package_{THREADS}threads"] / full_s["package_gpu"]

    measured = "measured" if eff_scale == 1 else (
        f"extrapolated x{t_factor:.2f} from averaging time {t_run:g} ({eff_scale:.4g} of full; steps "
        f"per replica {burn_steps + run_steps} of {burn_steps + full_steps})")
    np_note = ("NumPy on all points" if n_np == a.points else
               f"NumPy MEASURED ON {n_np} OF {a.points} POINTS, time extrapolated linearly x{pt_factor:.2f} in points")
    print(f"problem 2 ({MODEL}, a0={A0}, lam={LAM}): F on {a.points} points x in linspace(-3, 3), fixed mode, "
          f"dt={DT}, burn-in={BURN:g}, batch={BATCH:g}, {REPLICAS} replicas x time {TIME:g} per point "
          f"({work_full:.3e} path-steps); times {measured}; {np_note}; {a.repeats} interleaved repeats "
          f"(time: best; ratios: median of paired ratios); {info['compiler']}, {info['cxx_flags']}, "
          f"simd {info['simd']}, {ncpu} cores, cuda devices {info['cuda_devices']}")
    print(f"{'case':<26}{'full-task s':>13}{'path-steps/s':>14}")
    for key in rows:
        print(f"{key:<26}{full_s[key]:>13.2f}{rows[key]:>14.3e}")
    print()
    for key, v in ratios.items():
        print(f"{key:<56}{v:>8.2f}")
    print()
    nb_pt = REPLICAS * round(t_run / BATCH)
    tag = "" if eff_scale == 1 else (
        f" (full settings, extrapolated as 1/sqrt(time) from {nb_pt} batches per point: the max over "
        "points of noisy estimates, biased up at small --scale)")
    print(f"max stderr{tag}: package {se['package_max_stderr_full']:.5f}, numpy {se['numpy_max_stderr_full']:.5f} "
          f"(target {TARGET_SE}); run: package {se['package_max_stderr_run']:.5f}, numpy {se['numpy_max_stderr_run']:.5f}")
    print(f"max tau_int {se['max_tau_int']:.2f} at x={se['x_at_max_tau_int']:.2f}: batch = "
          f"{se['batch_over_max_tau_int']:.1f} tau_int; package converged flag at "
          f"{100 * se['package_converged_fraction']:.0f}% of points")
    print(f"NumPy vs package ({n_np} points): max z = {check['max_z']:.2f} at x={check['x_at_max_z']:.2f}, "
          f"mean z^2 = {check['mean_z2']:.2f} -> {'PASS' if check['pass'] else 'FAIL'} (all z < 4)")
    if gpu:
        print(f"GPU: full task {gpu['gpu_seconds_full_task']:.3f} s "
              f"({'measured' if gpu['gpu_measured_full'] else 'extrapolated'}; target < 1 s), "
              f"max stderr {gpu['gpu_max_stderr']:.5f}, max z vs NumPy {gpu['gpu_vs_numpy_max_z']:.2f}")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"settings": {"points": a.points, "numpy_points": int(n_np), "dt": DT, "burn_in": BURN,
                                    "batch": BATCH, "replicas": REPLICAS, "time": TIME, "time_run": t_run,
                                    "time_factor": t_factor, "numpy_points_factor": pt_factor,
                                    "repeats": a.repeats, "seed": a.seed},
                       "seconds_full_task": full_s, "rows": rows, "ratios": ratios, "times_run": times,
                       "stderr": se, "check": check, "gpu": gpu, "build_info": info}, fh, indent=2)


if __name__ == "__main__":
    main()
