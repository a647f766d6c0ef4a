"""The main job: ``multiscale run``.

Runs the pipeline on the built-in default problem (REFERENCE problem 1a, averaging with a
fast OU process) and writes its outputs to one folder. Each issue that adds a stage (learning,
validation, export) extends this chain; today it is:

1. simulate the full fast/slow system and measure the stationary slow statistics in-kernel;
2. estimate the averaged drift F(x) and diffusion A(x) on a grid with the frozen-x
   micro-solver, with standard errors, against the exact F(x) = 1.5x - x^3;
3. simulate the estimated averaged SDE (macro-solver) and compare its stationary statistics with
   the full system's and with the exact answer;
4. learn the effective SDE with a deep ensemble of neural networks from the stage-2 estimates,
   save it (``surrogate.h5``), check its drift against the exact one inside the ensemble's
   band, and simulate it with each path following one ensemble member, so that the stationary
   E[X^2] carries the model uncertainty in its standard error;
5. export it in the portable format (``surrogate.mss``) and read it back through the C API
   library, as downstream C/C++/Fortran solvers will;

and write the data, a summary table and a figure.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from . import exact
from .io import save_dataset
from .averaging import AveragingEstimator, AveragingOptions
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
    # Stage 2: averaged drift and diffusion on a grid (HMM micro-solver).
    grid = np.linspace(-2.5, 2.5, 81)  # spacing 1/16: interpolation bias well below the stderr
    est = AveragingEstimator(AveragingOptions(dt=0.05, burn_in=10.0, time=400.0, batch=10.0),
                             seed=seed, threads=threads).fit(DEFAULT_MODEL, grid)
    avg = est.result_
    save_dataset(avg, out / "averaged.nc")
    z_F = (avg["F"].values[:, 0] - (1.5 * grid - grid**3)) / avg["F_stderr"].values[:, 0]
    max_dA = float(np.max(np.abs(avg["A"].values[:, 0, 0] - 1.0)))
    rows.append({"quantity": "max|z| of F(x) on 81 points", "estimate": float(np.max(np.abs(z_F))),
                 "stderr": float(np.max(avg["F_stderr"].values)), "exact": 0.0,
                 "z": float(np.sqrt(np.mean(z_F**2)))})

    # Stage 3: the estimated averaged SDE (macro-solver) against the full system and exact.
    macro = est.fetch_model().simulate(t_end=t_end, dt=1e-3, x0=0.0, n_paths=n_paths,
                                       seed=seed + 1, save_every=1000, threads=threads)
    xm = macro["trajectory"].sel(state="x").where(macro["time"] > burn_in, drop=True).values
    per_path = (xm**2).mean(axis=1)
    est2, se2 = float(per_path.mean()), float(per_path.std(ddof=1) / np.sqrt(per_path.size))
    rows.append({"quantity": "E[X^2] averaged SDE", "estimate": est2, "stderr": se2,
                 "exact": ref[2], "z": (est2 - ref[2]) / se2})

    # Stage 4: the neural effective SDE learned from the stage-2 estimates.
    from .surrogate import EffectiveSDEEstimator, SurrogateOptions, save_surrogate

    t4 = time.perf_counter()
    learner = EffectiveSDEEstimator(SurrogateOptions(members=10, seed=seed, threads=threads)).fit(avg)
    sde = learner.fetch_model()
    save_surrogate(sde, out / "surrogate.h5")
    train_s = time.perf_counter() - t4
    export_check = _export(sde, out / "surrogate.mss")
    xt = np.linspace(-2.0, 2.0, 201)
    err = sde.drift(xt)[:, 0] - (1.5 * xt - xt**3)
    inside = float(np.mean(np.abs(err) <= 2 * sde.drift_spread(xt)[:, 0]))
    sim = sde.simulate(t_end=t_end, dt=0.01, x0=0.0, n_paths=n_paths, seed=seed + 2, save_every=100,
                       member="sample", threads=threads)
    xs = sim["trajectory"].sel(state="x").where(sim["time"] > burn_in, drop=True).values
    # Path p follows member p mod E: the spread of the per-member means holds both the Monte
    # Carlo error and the model uncertainty (a t statistic with E - 1 degrees of freedom).
    per_member = np.array([(xs[k::sde.members] ** 2).mean() for k in range(sde.members)])
    est4 = float(per_member.mean())
    se4 = float(per_member.std(ddof=1) / np.sqrt(sde.members))
    rows.append({"quantity": "E[X^2] neural effective SDE", "estimate": est4, "stderr": se4,
                 "exact": ref[2], "z": (est4 - ref[2]) / se4})
    surrogate_s = time.perf_counter() - t4

    kernel_var = float(ds["obs_var"].sel(observable="x").values[0])
    kernel_mean = float(ds["obs_mean"].sel(observable="x").values[0])
    summary = {
        "model": DEFAULT_MODEL, "eps": eps, "dt": dt, "t_end": t_end, "n_paths": n_paths,
        "seed": seed, "seconds": elapsed,
        "path_steps_per_second": n_paths * ds.attrs["n_steps"] / elapsed,
        "stationary": rows,
        "in_kernel_mean_x": kernel_mean, "in_kernel_var_x": kernel_var,
        "max_abs_A_minus_1": max_dA,
        "surrogate": {"members": sde.members, "train_seconds": train_s, "stage_seconds": surrogate_s,
                      "max_abs_drift_error_|x|<=2": float(np.max(np.abs(err))),
                      "fraction_of_exact_drift_inside_2_spread": inside,
                      "max_abs_diffusion_error": float(np.max(np.abs(sde.diffusion(xt)[:, 0, 0] - 1.0))),
                      "c_api_max_relative_difference": export_check},
        "all_within_4_stderr": bool(np.max(np.abs(z_F)) < 4.5 and
                                    all(abs(r["z"]) < 4 for r in rows if r["quantity"].startswith("E["))
                                    and inside >= 0.9 and (export_check is None or export_check < 1e-12)),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    lines = [f"multiscale run: {DEFAULT_MODEL}, eps={eps}, dt={dt}, {n_paths} paths, T={t_end} "
             f"({elapsed:.1f} s, {summary['path_steps_per_second']:.3g} path-steps/s)",
             f"{'quantity':<30}{'estimate':>12}{'stderr':>10}{'exact':>12}{'z':>8}"]
    for r in rows:
        lines.append(f"{r['quantity']:<30}{r['estimate']:>12.5f}{r['stderr']:>10.5f}{r['exact']:>12.5f}{r['z']:>8.2f}")
    lines.append(f"averaged diffusion A(x) on the grid: max |A - 1| = {max_dA:.2e} (exact 1); "
                 f"rms z of F(x) = {rows[2]['z']:.2f}")
    sm = summary["surrogate"]
    lines.append(f"neural effective SDE ({sde.members} members, trained in {train_s:.1f} s): max |b - F| on "
                 f"|x| <= 2 = {sm['max_abs_drift_error_|x|<=2']:.3f}, exact F inside the 2-spread band at "
                 f"{100 * inside:.0f}% of points, max |A - 1| = {sm['max_abs_diffusion_error']:.2e}")
    lines.append("portable export surrogate.mss read back through the C API: max relative difference "
                 + ("n/a (library not built)" if export_check is None else f"{export_check:.1e}"))
    lines.append(f"in-kernel streaming mean/var of x over t in ({burn_in}, {t_end}]: "
                 f"{kernel_mean:.5f} / {kernel_var:.5f} (exact 0 / {ref[2]:.5f})")
    figure = _plot_density(ds, out / "stationary_density.png")
    figure = _plot_drift(avg, out / "averaged_drift.png", sde) and figure
    lines.append(f"outputs: {out}/simulation.nc, averaged.nc, surrogate.h5, surrogate.mss, summary.json, summary.txt"
                 + (", stationary_density.png, averaged_drift.png" if figure else
                    " (no figure: pip install 'multiscale[plot]' for matplotlib)"))
    text = "\n".join(lines)
    (out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0 if summary["all_within_4_stderr"] else 1


def _export(sde, path: Path) -> float | None:
    """Write the portable file and evaluate it through the C API library, as C/C++/Fortran
    programs will; returns the largest difference from the Python model relative to the
    drift's scale (None when the library is not built, as in a bare source checkout)."""
    from .export import CSurrogate, export_surrogate, get_library

    export_surrogate(sde, path)
    try:
        get_library()
    except FileNotFoundError:
        return None
    x = np.linspace(-3.0, 3.0, 301)
    with CSurrogate(path) as c:
        ref = sde.drift(x)
        return float(np.max(np.abs(c.drift(x) - ref)) / np.max(np.abs(ref)))


def _pyplot():
    """matplotlib.pyplot with a file backend, or None when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is optional
        return None
    return plt


def _plot_density(ds, path: Path) -> bool:
    """Kernel histogram of x against the exact averaged density; False if matplotlib is absent."""
    plt = _pyplot()
    if plt is None:
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


def _plot_drift(avg, path: Path, sde=None) -> bool:
    """Top: estimated F(x) with 2-stderr bars against the exact averaged drift. Bottom (with a
    surrogate): errors against the exact drift, of the estimates and of the learned drift with
    its 2-spread band, over and beyond the data's range."""
    plt = _pyplot()
    if plt is None:
        return False
    x = avg["x"].values[:, 0]
    F, se = avg["F"].values[:, 0], avg["F_stderr"].values[:, 0]
    exact_F = lambda v: 1.5 * v - v**3  # noqa: E731
    fig, axes = plt.subplots(2 if sde is not None else 1, 1, figsize=(5, 5.6 if sde is not None else 3.2),
                             squeeze=False, sharex=sde is not None)
    ax = axes[0, 0]
    xs = np.linspace(x.min(), x.max(), 200)
    ax.plot(xs, exact_F(xs), "k", label=r"exact $F(x) = 1.5x - x^3$")
    ax.errorbar(x, F, yerr=2 * se, fmt="o", ms=3, label="frozen-x estimate $\\pm$ 2 s.e.")
    ax.set_ylabel("F(x)")
    ax.legend(fontsize=7)
    if sde is not None:
        ax = axes[1, 0]
        xw = np.linspace(x.min() - 0.8, x.max() + 0.8, 300)
        b, sp = sde.drift(xw)[:, 0], sde.drift_spread(xw)[:, 0]
        ax.axhline(0.0, color="k", lw=0.8)
        ax.errorbar(x, F - exact_F(x), yerr=2 * se, fmt="o", ms=2, lw=0.8, label="estimate - exact")
        ax.plot(xw, b - exact_F(xw), "C3", lw=1.2, label=f"neural drift - exact ({sde.members}-member mean)")
        ax.fill_between(xw, b - exact_F(xw) - 2 * sp, b - exact_F(xw) + 2 * sp, color="C3", alpha=0.25,
                        label="$\\pm$ 2 ensemble spread")
        for edge in (x.min(), x.max()):
            ax.axvline(edge, color="0.5", ls=":", lw=0.8)
        ax.set_ylim(-8 * se.max(), 8 * se.max())
        ax.set_ylabel("error in F(x)")
        ax.legend(fontsize=7, loc="upper center")
    axes[-1, 0].set_xlabel("x (dotted: range of the estimates)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return True
