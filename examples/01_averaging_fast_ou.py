"""Averaging: a slow variable driven by a fast Ornstein-Uhlenbeck process (reference problem 1a).

The full system (Ito), X slow and Y fast, with c = 0.5, sigma = 1, eps = 0.01:

    dX = (X - X^3 + c Y) dt + sigma dW1
    dY = -(Y - X)/eps dt + sqrt(2/eps) dW2

With X frozen at x, the fast process in fast time s = t/eps is dY = -(Y - x) ds + sqrt(2) dW,
whose invariant law is N(x, 1). Averaging the slow drift over it gives the exact averaged drift

    F(x) = x - x^3 + c E[Y] = (1 + c) x - x^3 = 1.5 x - x^3,

and as eps -> 0 the law of X converges to that of the averaged SDE dX = F(X) dt + sigma dW, whose
invariant density is exactly rho(x) ∝ exp(2 int F / sigma^2) = exp(1.5 x^2 - 0.5 x^4), with
E[X^2] = 1.2460978383 (1-D quadrature). This script

1. simulates the full system and compares E[X^2], E[X^4] and the histogram of X with rho;
2. estimates F(x) on a grid with the heterogeneous multiscale method (AveragingEstimator: the
   fast process at frozen x, time-averaged) and compares it with 1.5 x - x^3 point by point.

References: G.A. Pavliotis, A.M. Stuart, Multiscale Methods (Springer 2008), Ch. 10 (averaging,
formal) and Ch. 17 (convergence); R.Z. Khasminskii, Kybernetika 4 (1968) 260-279.

Run:  python examples/01_averaging_fast_ou.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import matplotlib.pyplot as plt
import numpy as np

import multiscale as ms
from multiscale import exact
from multiscale.validate import exact_limit, stationary_density

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 1a: averaging with a fast OU process")

# Exact answers, from the package's own quadratures (no reference files are read).
moments = exact.fast_ou_linear_moments(c=0.5, sigma=1.0, powers=(2, 4))
limit = exact_limit("fast_ou_linear")                      # F(x) and A(x) of the averaged SDE
x_grid, rho = stationary_density(limit.drift, limit.diffusion, -3.0, 3.0)

# 1. The full system. Its state is saved every 0.1; after a burn-in of 5 time units each path's
#    time average is one sample, so paths give independent samples for the standard error.
n_paths, t_end = (2000, 15.0) if q else (20000, 30.0)
full = ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=t_end, n_paths=n_paths, seed=1,
                   save_every=100, threads=args.threads)
x = full.trajectory.sel(state="x").where(full.time > 5.0, drop=True).values   # (paths, times)


def path_mean(values):
    """Mean over paths of per-path time averages, and its standard error."""
    per_path = values.mean(axis=1)
    return per_path.mean(), per_path.std(ddof=1) / np.sqrt(per_path.size)


for k in (2, 4):
    table.check(f"E[X^{k}], full system eps=0.01", *path_mean(x**k), moments[k])

# 2. The averaged drift by the heterogeneous multiscale method: at every point the fast process
#    runs with x frozen (16 replicas, `time` fast-time units each, exact OU step).
points = np.linspace(-2.0, 2.0, 21)
options = ms.AveragingOptions(dt=0.05, burn_in=10.0, time=200.0 if q else 2000.0, replicas=16, batch=10.0)
est = ms.AveragingEstimator(options, seed=2, threads=args.threads).fit("fast_ou_linear", points)
F, F_se = est.result_.F.values[:, 0], est.result_.F_stderr.values[:, 0]
F_exact = limit.drift(points)
for xv in (-1.5, -0.5, 0.5, 1.0, 1.5):
    i = int(np.argmin(np.abs(points - xv)))
    table.check(f"F({xv:+.1f}) = 1.5x - x^3", F[i], F_se[i], F_exact[i])
table.check_all("F(x) on the whole grid", F, F_se, F_exact)

# Figure: F(x) against the exact averaged drift; histograms of X against rho.
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
xs = np.linspace(-2.1, 2.1, 200)
ax[0].plot(xs, limit.drift(xs), "k-", label="exact F(x) = 1.5x - x³")
ax[0].errorbar(points, F, yerr=2 * F_se, fmt="o", ms=4, color="C0", label="AveragingEstimator (±2 s.e.)")
ax[0].set(xlabel="x", ylabel="averaged drift F(x)", title="averaged drift")
ax[0].legend()
ax[1].hist(x.ravel(), bins=np.linspace(-3, 3, 61), density=True, histtype="step", lw=1.5,
           label="full system, eps = 0.01")
ax[1].plot(x_grid, rho, "k--", lw=1, label="exact ρ ∝ exp(1.5x² - 0.5x⁴)")
ax[1].set(xlabel="x", ylabel="density", title="invariant density of the slow variable")
ax[1].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/01_averaging_fast_ou.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
