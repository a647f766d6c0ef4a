"""The main job: ``multiscale run``.

Runs the pipeline on the built-in default problem (REFERENCE problem 1a, averaging with a
fast OU process) and writes its outputs to one folder. Each issue that adds a stage (averaged
drift estimation, learning, validation, export) extends this chain; today it is: simulate the
full system, measure the stationary slow statistics in-kernel, compare them with the exact
averaged answers, and write the data, a summary table and a figure.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import exact
from .io import save_dataset
from .simulate import Histogram, Observables, simulate

DEFAULT_MODEL = "fast_ou_linear"


def run_default(out: Path, n_paths: int = 2000, seed: int = 0, threads: int | None = None,
                eps: float = 0.01, dt: float = 1e-3, t_end: float = 60.0, burn_in: float = 10.0) -> int:
    """Run the default pipeline; returns a process exit code (0: every check passed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    obs = Observables(("x",), start=burn_in, histogram=Histogram(bins=60, lo=-3.0, hi=3.0))
    ds = simulate(DEFAULT_MODEL, eps=eps, dt=dt, t_end=t_end, n_paths=n_paths, seed=seed,
                  save_every=100, observables=obs, threads=threads)
    elapsed = time.perf_counter() - t0
    save_dataset(ds, out / "simulation.nc")

    # Stationary moments with error bars from independent per-path time averages.
    x = ds["trajectory"].sel(state="x").where(ds["time"] > burn_in, drop=True).values
    ref = exact.fast_ou_linear_moments(c=0.5, sigma=1.0)
    rows = []
    for k in (2, 4):
        per_path = (x**k).mean(axis=1)
        est, se = float(per_path.mean()), float(per_path.std(ddof=1) / np.sqrt(per_path.size))
        rows.append({"quantity": f"E[X^{k}]", "estimate": est, "stderr": se, "exact": ref[k],
                     "z": (est - ref[k]) / se})
    kernel_var = float(ds["obs_var"].sel(observable="x").values[0])
    kernel_mean = float(ds["obs_mean"].sel(observable="x").values[0])
    summary = {
        "model": DEFAULT_MODEL, "eps": eps, "dt": dt, "t_end": t_end, "n_paths": n_paths,
        "seed": seed, "seconds": elapsed,
        "path_steps_per_second": n_paths * ds.attrs["n_steps"] / elapsed,
        "stationary": rows,
        "in_kernel_mean_x": kernel_mean, "in_kernel_var_x": kernel_var,
        "all_within_4_stderr": all(abs(r["z"]) < 4 for r in rows),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"multiscale run: {DEFAULT_MODEL}, eps={eps}, dt={dt}, {n_paths} paths, T={t_end} "
             f"({elapsed:.1f} s, {summary['path_steps_per_second']:.3g} path-steps/s)",
             f"{'quantity':<10}{'estimate':>12}{'stderr':>10}{'exact':>12}{'z':>8}"]
    for r in rows:
        lines.append(f"{r['quantity']:<10}{r['estimate']:>12.5f}{r['stderr']:>10.5f}{r['exact']:>12.5f}{r['z']:>8.2f}")
    lines.append(f"in-kernel streaming mean/var of x over t in ({burn_in}, {t_end}]: "
                 f"{kernel_mean:.5f} / {kernel_var:.5f} (exact 0 / {ref[2]:.5f})")
    figure = _plot_density(ds, out / "stationary_density.png")
    lines.append(f"outputs: {out}/simulation.nc, summary.json, summary.txt"
                 + (", stationary_density.png" if figure else
                    " (no figure: pip install 'multiscale[plot]' for matplotlib)"))
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if summary["all_within_4_stderr"] else 1


def _plot_density(ds, path: Path) -> bool:
    """Kernel histogram of x against the exact averaged density; False if matplotlib is absent."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return False
    counts = ds["hist_count"].sel(observable="x").values[0]
    centers = ds["bin_center"].values
    width = centers[1] - centers[0]
    total = counts.sum() + int(ds["hist_underflow"].values[0, 0]) + int(ds["hist_overflow"].values[0, 0])
    xs = np.linspace(-3, 3, 400)
    logp = 1.5 * xs**2 / 1.0 - 0.5 * xs**4
    dens = np.exp(logp - logp.max())
    dens /= np.trapezoid(dens, xs)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.bar(centers, counts / (total * width), width=width, alpha=0.5, label="full system (kernel histogram)")
    ax.plot(xs, dens, "k", label=r"averaged SDE, exact $\propto e^{1.5x^2 - 0.5x^4}$")
    ax.set_xlabel("x")
    ax.set_ylabel("density")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
