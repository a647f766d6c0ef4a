"""Homogenization with fast OU noise: the noise-induced (Ito-Stratonovich) drift
(reference problem 4, model `fast_ou_noise`).

The full system (Ito; X has no noise of its own, so there is no ambiguity), eps -> 0:

    dX = ( h(X) + f(X) Y/eps ) dt,       h(x) = -x - x^3,  f(x) = sqrt(1 + x^2)
    dY = -Y/eps^2 dt + (sqrt(2)/eps) dW

Y/eps is coloured noise of correlation time eps^2; its time integral tends to sqrt(2) W. The limit
is the Stratonovich SDE dX = h dt + sqrt(2) f o dW (Wong-Zakai), i.e. in Ito form

    dX = (h + f f') dt + sqrt(2) f dB = -X^3 dt + sqrt(2 (1 + X^2)) dB:

the drift gains the noise-induced term f f' = x. Homogenization gives it as the corrector term
F = h + E[(d/dx Phi) f Y] with the cell solution Phi = f(x) y, and the diffusion by Green-Kubo,
A = 2 int_0^inf E[f Y_0 f Y_t] dt = 2 (1 + x^2). The invariant density of the limit is
(1 + x^2)^(-1/2) e^(-x^2/2), E[X^2] = 0.715378 (1-D quadrature); dropping the correction
(drift -x - x^3) would give (1 + x^2)^(-1) e^(-x^2/2) and E[X^2] = 0.525135. This script

1. estimates F(x) (with the pathwise corrector) and A(x) (Green-Kubo) with AveragingEstimator and
   compares them with -x^3 and 2(1 + x^2), and with the uncorrected -x - x^3;
2. computes E[X^2] of the estimated SDE by quadrature, with error bars propagated from the
   estimates (parametric bootstrap), and simulates the full system at eps = 0.05 and 0.1.

References: Pavliotis & Stuart, Multiscale Methods (2008), Ch. 11 (fast OU noise, Stratonovich
corrections) and Ch. 18; E. Wong, M. Zakai, Ann. Math. Statist. 36 (1965) 1560-1564;
G.C. Papanicolaou, W. Kohler, Comm. Pure Appl. Math. 27 (1974) 641-668.

Run:  python examples/04_ito_stratonovich.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import matplotlib.pyplot as plt
import numpy as np

import multiscale as ms
from multiscale import exact
from multiscale.validate import exact_limit, stationary_density

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 4: homogenization with fast OU noise (Ito-Stratonovich correction)")

limit = exact_limit("fast_ou_noise")                   # drift -x^3, diffusion 2(1 + x^2)
EX2 = exact.fast_ou_noise_moments(powers=(2,))[2]      # 0.715378
EX2_wrong = exact.fast_ou_noise_moments(powers=(2,), ito_correction=False)[2]   # 0.525135

# 1. F and A at frozen x. Times are in fast time (t/eps^2); the fast OU step is exact.
points = np.linspace(-4.0, 4.0, 65)
options = ms.AveragingOptions(dt=0.05, burn_in=10.0, time=1000.0 if q else 4000.0, replicas=32 if q else 128,
                              batch=10.0)
est = ms.AveragingEstimator(options, seed=4, threads=args.threads).fit("fast_ou_noise", points)
r = est.result_
F, F_se = r.F.values[:, 0], r.F_stderr.values[:, 0]
A, A_se = r.A.values[:, 0, 0], r.A_stderr.values[:, 0, 0]
for xv in (1.0, 2.0):
    i = int(np.argmin(np.abs(points - xv)))
    table.check(f"F({xv:g}) = -x^3", F[i], F_se[i], limit.drift(points[i]))
    wrong = -points[i] - points[i] ** 3
    table.note(f"  uncorrected -x - x^3 at {xv:g}", f"{wrong:.6g}", "",
               f"z = {(F[i] - wrong) / F_se[i]:+.1f}: excluded")
    table.check(f"A({xv:g}) = 2(1 + x^2)", A[i], A_se[i], limit.diffusion(points[i]))
table.check_all("F(x) on [-4, 4] (F(0) = 0 exactly)", F, F_se, limit.drift(points))
table.check_all("A(x) on [-4, 4]", A, A_se, limit.diffusion(points))

# 2. E[X^2] of the estimated SDE by quadrature (F and sqrt(A) interpolated between the points,
#    as the macro-solver does), and its error from resampling the estimates within their errors.
def second_moment(sde):
    x, rho = stationary_density(sde.drift, sde.diffusion, -6.0, 6.0)
    return np.trapezoid(x**2 * rho, x)


rng = np.random.default_rng(0)
boot = [second_moment(ms.AveragedSDE(r.assign(F=(r.F.dims, (F + F_se * rng.standard_normal(F.size))[:, None]),
                                              A=(r.A.dims, (A + A_se * rng.standard_normal(A.size))[:, None, None]))))
        for _ in range(50 if q else 200)]
table.check("E[X^2], estimated SDE (quadrature)", second_moment(est.fetch_model()), np.std(boot, ddof=1), EX2)

# The full system, resolving eps^2 (dt = eps^2/50); per-path time averages after t = 3.
for eps, checked in ((0.05, True), (0.1, False)):
    step = eps**2 / 50
    ds = ms.simulate("fast_ou_noise", eps=eps, dt=step, t_end=8.0, n_paths=1000 if q else 4000, seed=6,
                     save_every=int(round(0.1 / step)), threads=args.threads)
    x = ds.trajectory.sel(state="x").where(ds.time > 3.0, drop=True).values
    per_path = (x**2).mean(axis=1)
    m, se = per_path.mean(), per_path.std(ddof=1) / np.sqrt(per_path.size)
    if checked:
        table.check(f"E[X^2], full system eps = {eps:g}", m, se, EX2)
        x_full = x
    else:
        table.note(f"E[X^2], full system eps = {eps:g}", f"{m:.6g} ± {se:.2g}", f"{EX2:.6g}",
                   f"z = {(m - EX2) / se:+.2f} (O(eps) bias; not checked)")
table.note("E[X^2] without the correction (wrong limit)", f"{EX2_wrong:.6g}", f"{EX2:.6g}")

# Figure: the noise-induced part of F, with the correct and the uncorrected limit; A; the density.
fig, ax = plt.subplots(1, 3, figsize=(14, 4))
xs = np.linspace(-4, 4, 200)
h = lambda v: -v - v**3                                   # noqa: E731  (the drift without the fast noise)
ax[0].plot(xs, limit.drift(xs) - h(xs), "k-", label="exact f f' = x")
ax[0].axhline(0, color="r", ls=":", label="uncorrected: 0")
ax[0].errorbar(points, F - h(points), yerr=2 * F_se, fmt="o", ms=3, label="AveragingEstimator (±2 s.e.)")
ax[0].set(xlabel="x", ylabel="F(x) - h(x)", title="noise-induced drift F - h")
ax[0].legend(fontsize=8)
ax[1].plot(xs, limit.diffusion(xs), "k-", label="exact 2(1 + x²)")
ax[1].errorbar(points, A, yerr=2 * A_se, fmt="o", ms=3, label="Green-Kubo estimate (±2 s.e.)")
ax[1].set(xlabel="x", ylabel="A(x)", title="effective diffusion")
ax[1].legend(fontsize=8)
xg, rho = stationary_density(limit.drift, limit.diffusion, -4.0, 4.0)
_, rho_wrong = stationary_density(lambda v: -v - v**3, limit.diffusion, -4.0, 4.0)
ax[2].hist(x_full.ravel(), bins=np.linspace(-4, 4, 81), density=True, histtype="step", lw=1.5,
           label="full system, ε = 0.05")
ax[2].plot(xg, rho, "k-", lw=1, label="exact limit")
ax[2].plot(xg, rho_wrong, "r:", label="without the correction")
ax[2].set(xlabel="x", ylabel="density", title="invariant density")
ax[2].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/04_ito_stratonovich.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
