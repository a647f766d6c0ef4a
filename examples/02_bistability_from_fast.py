"""Bistability created by a fast variable (reference problem 2, model `tilted_double_well`).

The full system (Ito) is the gradient system of H(x, y) = x^2/2 - a0 x - lam x y + y^4/4 - y^2/2
at unit temperature, with a0 = 0.1, lam = 1.5:

    dX = (a0 - X + lam Y) dt + sqrt(2) dW1
    dY = -(Y^3 - Y - lam X)/eps dt + sqrt(2/eps) dW2

On its own X is an Ornstein-Uhlenbeck process with one well. With X frozen at x, the fast Y lives
in a double well tilted by lam x; its invariant law is mu_x(dy) ∝ exp(-y^4/4 + y^2/2 + lam x y) dy,
so the averaged drift is exactly

    F(x) = a0 - x + lam m(lam x),    m(s) = E_mu[Y] = d/ds log Z(s),  Z(s) = int exp(-y^4/4 + y^2/2 + s y) dy,

a 1-D quadrature. F'(0) = -1 + lam^2 E_0[Y^2] = 1.344 > 0: the averaged SDE dX = F dt + sqrt(2) dW
has two wells (zeros of F at -2.375 and 2.673, saddle at -0.075) that X alone does not have.
Its invariant density rho(x) ∝ exp(a0 x - x^2/2) Z(lam x) is also the exact X-marginal of the
full system at every eps (the full system is reversible with density exp(-H)). This script

1. estimates F on a grid with the heterogeneous multiscale method (AveragingEstimator, adaptive
   to a target standard error) and compares it point by point, and its zeros, with the exact F;
2. simulates the estimated averaged SDE (the macro-solver, F interpolated between the points)
   and compares its invariant density, P(X > 0) and E[X] with the exact ones.

Note: the fast step is Euler-Maruyama (the fast drift is not linear), which biases F by O(dt);
dt = 0.0025 keeps that bias below a quarter of the standard error.

References: Pavliotis & Stuart, Multiscale Methods (2008), Ch. 10 and 17; Khasminskii (1968);
Gardiner, Handbook of Stochastic Methods, Ch. 5 (stationary densities of 1-D diffusions).

Run:  python examples/02_bistability_from_fast.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import matplotlib.pyplot as plt
import numpy as np
from scipy.optimize import brentq

import multiscale as ms
from multiscale import exact
from multiscale.validate import exact_limit, stationary_density, stationary_histogram

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 2: bistability created by a fast tilted double well")

limit = exact_limit("tilted_double_well")             # F(x) by quadrature, A = 2
P_pos = exact.tilted_double_well_prob_positive()      # P(X > 0) = 0.62024...
mean_x = exact.tilted_double_well_moments(powers=(1,))[1]

# 1. F on a grid wide enough for the invariant law (std of X is 2.7), to a target standard error.
points = np.linspace(-8.0, 8.0, 65)
options = ms.AveragingOptions(dt=0.0025, burn_in=10.0, time=200.0, replicas=16 if not q else 8, batch=10.0,
                              target_stderr=0.03 if q else 0.01)
est = ms.AveragingEstimator(options, seed=2, threads=args.threads).fit("tilted_double_well", points)
r = est.result_
F, F_se = r.F.values[:, 0], r.F_stderr.values[:, 0]
F_exact = limit.drift(points)
for xv in (-2.0, -1.0, 0.0, 1.0, 2.0):
    i = int(np.argmin(np.abs(points - xv)))
    table.check(f"F({xv:+.1f})", F[i], F_se[i], F_exact[i])
table.check_all("F(x) on [-8, 8]", F, F_se, F_exact)
table.note("points converged (batch >= 5 tau_int, target s.e.)", f"{int(r.converged.sum())}/{points.size}")

# The zeros of F: exact by root finding; estimated by linear interpolation between the two
# bracketing points, with the delta-method standard error. (Interpolating the exact F instead
# would be off by at most 3e-3 here: below the standard error.)
for lo, hi, name in ((-3.0, -1.5, "stable zero x_L"), (-1.0, 1.0, "unstable zero x_u"), (2.0, 3.5, "stable zero x_R")):
    z_exact = brentq(lambda v: float(limit.drift(np.array([v]))[0]), lo, hi, xtol=1e-12)
    i = int(np.searchsorted(points, z_exact)) - 1           # points[i] < zero < points[i + 1]
    h, D = points[i + 1] - points[i], F[i + 1] - F[i]
    z_est = points[i] - F[i] * h / D
    z_se = h / D**2 * np.hypot(F[i + 1] * F_se[i], F[i] * F_se[i + 1])
    table.check(name, z_est, z_se, z_exact)

# 2. The estimated averaged SDE, simulated by the macro-solver: histograms in independent batches
#    of paths (for error bars), after a burn-in of 100 (the slowest relaxation time is about 14).
sde = est.fetch_model()
n_paths, t_end = (1000, 200.0) if q else (4000, 400.0)
dens = stationary_histogram(sde.model_info(), lo=-8.0, hi=9.0, bins=68, t_burn=100.0, t_end=t_end, dt=0.01,
                            n_paths=n_paths, n_batches=20, seed=3, threads=args.threads)
table.check("P(X > 0), estimated averaged SDE", *dens.moment(lambda v: (v > 0) * 1.0), P_pos)
table.check("E[X], estimated averaged SDE", *dens.moment(lambda v: v), mean_x)
tv = dens.distance(lambda v: np.exp(exact.tilted_double_well_x_log_density(v)), "tv")
table.note("TV(histogram, exact rho)", f"{tv.estimate:.3g} ± {tv.stderr:.2g}", "0",
           f"noise floor {tv.noise_floor:.2g}")

# Figure: F with its zeros; the invariant density with its two wells.
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
xs = np.linspace(-8, 8, 400)
ax[0].axhline(0, color="0.7", lw=0.8)
ax[0].plot(xs, limit.drift(xs), "k-", label="exact F(x)")
ax[0].plot(xs, 0.1 - xs, "k:", label="without the fast variable: a0 - x")
ax[0].errorbar(points, F, yerr=2 * F_se, fmt="o", ms=3, label="AveragingEstimator (±2 s.e.)")
ax[0].set(xlabel="x", ylabel="F(x)", title="averaged drift", ylim=(-3, 3))
ax[0].legend(fontsize=8)
xg, rho = stationary_density(limit.drift, limit.diffusion, -8.0, 9.0)
ax[1].errorbar(dens.centers, dens.density, yerr=2 * dens.stderr, fmt=".", label="estimated averaged SDE (±2 s.e.)")
ax[1].plot(xg, rho, "k-", lw=1, label="exact ρ ∝ exp(a0 x - x²/2) Z(λx)")
ax[1].set(xlabel="x", ylabel="density", title="invariant density: two wells")
ax[1].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/02_bistability_from_fast.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
