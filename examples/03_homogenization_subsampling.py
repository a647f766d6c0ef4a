"""Homogenization: learning an effective diffusion from trajectories, and why subsampling
matters (reference problem 3a, model `periodic_potential_quadratic`).

A particle in the potential V(x) = x^2/2 plus a fast periodic potential p(x/eps),
p(y) = A cos(2 pi y), at temperature sigma (A = 1, sigma = 0.5, eps = 0.1):

    dX = -V'(X) dt - (1/eps) p'(X/eps) dt + sqrt(2 sigma) dW.

As eps -> 0, X converges to the homogenized SDE

    dX = -K V'(X) dt + sqrt(2 sigma K) dW,   K = 1/(Z Zhat),  Z = int_0^1 e^{-p/sigma},  Zhat = int_0^1 e^{p/sigma},

so for the cosine K = 1/I0(A/sigma)^2 = 0.19244 and the effective diffusivity is sigma K = 0.09622
(Lifson-Jackson), five times smaller than sigma: the particle is slowed by the barriers of p.

The trap (Pavliotis & Stuart 2007): estimating the diffusion from increments of the *finely
sampled* path gives sigma, the unhomogenized value, not sigma K. Over a lag D with eps^2 << D,
the increments see the homogenized diffusion; at D << eps^2 they see the bare noise. This script

1. measures the increments' diffusion rate at lags from one time step (2e-5) to about 0.5, with
   `multiscale.surrogate.lag_ladder`: it falls from sigma to sigma K past eps^2 = 0.01 (the
   differenced rate, which the fast fluctuation's lag-independent variance does not reach,
   reads sigma K already at lag eps^2);
2. learns the effective SDE with EffectiveSDEEstimator from trajectories subsampled every 0.01,
   with the default lag rule and the default MULTISCALE transition density, and compares its
   diffusion with sigma K; the naive Euler likelihood at the finest lag is shown beside it.

References: G.A. Pavliotis, A.M. Stuart, Parameter estimation for multiscale diffusions,
J. Stat. Phys. 127 (2007), doi:10.1007/s10955-007-9300-6; Pavliotis & Stuart, Multiscale Methods
(2008), Ch. 13 and 18; S. Lifson, J.L. Jackson, J. Chem. Phys. 36 (1962) 2410.

Run:  python examples/03_homogenization_subsampling.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import warnings

import matplotlib.pyplot as plt
import numpy as np

import multiscale as ms
from multiscale import exact
from multiscale.surrogate import lag_ladder

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 3a: homogenized diffusion from trajectories")

EPS, SIGMA = 0.1, 0.5
K = exact.periodic_homogenized_K(A=1.0, sigma=SIGMA)      # quadrature of Z and Zhat
D_hom = SIGMA * K                                          # 0.0962...
dt = 2e-3 * EPS**2                                         # resolves the fast scale (dt << eps^2)
rng = np.random.default_rng(0)


def paths(n_paths, t_end, save_every, seed):
    """(paths, times, 1) samples of X, started from the stationary law N(0, sigma)."""
    x0 = rng.normal(0.0, np.sqrt(SIGMA), n_paths)
    ds = ms.simulate("periodic_potential_quadratic", eps=EPS, dt=dt, t_end=t_end, n_paths=n_paths, seed=seed,
                     x0=x0, save_every=save_every, threads=args.threads)
    return ds, ds.trajectory.sel(state="x").values[..., None]


# Two data sets of the same system: every step over a short time (to see the fine scale), and
# every 0.01 = 500 steps over a long time (what one would record in practice).
_, fine = paths(32, 20000 * dt, 1, seed=4)
n_paths = 16 if q else 64
coarse_ds, coarse = paths(n_paths, 40.0, int(round(0.01 / dt)), seed=3)

# 1. The naive estimator at every step: quadratic variation / (2 dt). It measures sigma.
naive = np.mean(np.diff(fine[..., 0], axis=1) ** 2) / (2 * dt)
table.check("naive D at lag dt = 2e-5 (-> sigma, not sigma K)", naive, None, SIGMA, rel_tol=0.10)

# The diffusion rate against the lag, from the increments' variance after a local drift fit
# (lag_ladder): the apparent rate v / lag ("v") and the differenced rate
# (v(2 lag) - v(lag)) / lag ("d"), which the fast fluctuation's lag-independent variance does not
# reach; in 8 groups of paths for error bars.
def ladder(arr, h, groups=8, key="v"):
    runs = [lag_ladder(g, h) for g in np.array_split(arr, groups)]
    n = min(len(r_[key]) for r_ in runs)
    lags = runs[0]["k"][:n] * h
    D = np.array([r_[key][:n, 0] for r_ in runs]) / 2          # (groups, lags)
    return lags, D.mean(0), D.std(0, ddof=1) / np.sqrt(len(runs))


lag_f, D_f, se_f = ladder(fine, dt)
lag_c, D_c, se_c = ladder(coarse, 0.01)
lag_d, D_d, se_d = ladder(coarse, 0.01, key="d")
table.check(f"D from the differenced rate at lag {lag_d[0]:.3g} (C-free)", D_d[0], se_d[0], D_hom)
table.note(f"D from increments at lag {lag_c[0]:.3g} = eps^2", f"{D_c[0]:.5g} ± {se_c[0]:.2g}", f"{D_hom:.6g}",
           f"{100 * (D_c[0] / D_hom - 1):+.1f}% (fast scale not yet averaged)")

# 2. Learned effective SDEs from the subsampled trajectories.
xs = np.linspace(-1.0, 1.0, 21)           # where the data are dense (X ~ N(0, 0.5))
small = dict(members=5, seed=1, hidden=(16, 16), epochs=60 if q else 200, batch_size=4096)
est = ms.EffectiveSDEEstimator(ms.SurrogateOptions(**small)).fit(coarse_ds)    # lag rule, MULTISCALE
sde = est.fetch_model()
D_ms = sde.diffusion(xs)[:, 0, 0] / 2
table.check(f"learned D, MULTISCALE, lag {est.lag_:.3g} (mean on [-1,1])", D_ms.mean(), None, D_hom, rel_tol=0.05)
table.note("  worst point on [-1, 1]", f"{D_ms[np.argmax(np.abs(D_ms - D_hom))]:.5g}", f"{D_hom:.6g}",
           f"{100 * np.max(np.abs(D_ms / D_hom - 1)):.1f}%")
slope = np.polyfit(xs, sde.drift(xs)[:, 0], 1)[0]
table.note("  learned drift slope (-K)", f"{slope:.4g}", f"{-K:.6g}",
           f"{100 * (slope / -K - 1):+.0f}% (not checked: short-lag drift carries fast-scale bias)")

naive_opts = ms.SurrogateOptions(**{**small, "members": 3, "epochs": 60}, method=ms.TrajectoryMethod.EULER,
                                 bootstrap=False)
with warnings.catch_warnings(record=True) as caught:          # it warns, rightly: see the text
    warnings.simplefilter("always")
    naive_sde = ms.EffectiveSDEEstimator(naive_opts).fit(fine, dt=dt, lag=dt, variables=["x"]).fetch_model()
D_naive = naive_sde.diffusion(xs)[:, 0, 0].mean() / 2
table.check("learned D, EULER at lag dt (-> sigma, not sigma K)", D_naive, None, SIGMA, rel_tol=0.10)
table.note("  LagWarning raised", str(any(issubclass(w.category, ms.LagWarning) for w in caught)))

# Figure: diffusion rate against the lag.
fig, ax = plt.subplots(figsize=(6.5, 4.2))
ax.errorbar(lag_f, D_f, yerr=2 * se_f, fmt="o-", ms=3, label="increments, every step")
ax.errorbar(lag_c, D_c, yerr=2 * se_c, fmt="s-", ms=3, label="increments, subsampled every 0.01")
ax.axhline(SIGMA, color="C3", ls=":", label="σ (unhomogenized)")
ax.axhline(D_hom, color="k", ls="--", label="σK (homogenized, exact)")
ax.axvline(EPS**2, color="0.6", lw=0.8)
ax.text(EPS**2 * 1.1, 0.25, "ε²", color="0.4")
ax.plot([est.lag_], [D_ms.mean()], "k*", ms=12, label="learned (MULTISCALE, lag rule)")
ax.set(xscale="log", yscale="log", xlabel="lag D", ylabel="D(lag) = variance rate of the increments / 2",
       title="Why subsampling matters (problem 3a, ε = 0.1)")
ax.legend(fontsize=8, loc="upper right")
fig.tight_layout()
path = f"{args.out}/03_homogenization_subsampling.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
