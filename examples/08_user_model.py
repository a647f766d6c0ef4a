"""A user-defined model in the model language: a double well kicked by sin of a fast OU process.

The catalogue has no such model; it is written here as expression strings (``ms.Model``),
compiled to the same kernels as the catalogue at first use, and then runs everywhere a catalogue
name does. The full system (Ito, averaging scaling), X slow and Y fast, with c = 1, sigma = 1:

    dX = (X - X^3 + c sin(Y)) dt + sigma dW1
    dY = -(Y - X)/eps dt + sqrt(2/eps) dW2

With X frozen at x the fast process in fast time s = t/eps is dY = -(Y - x) ds + sqrt(2) dW,
whose invariant law is N(x, 1): declared in the model as the known fact
``fast_invariant_density = "exp(-(y - x)^2/2)"``, from which
``multiscale.validate.exact_limit`` computes the averaged limit by quadrature over y. In closed
form, E[sin(Y)] = Im E[exp(iY)] = sin(x) exp(-1/2) for Y ~ N(x, 1), so the averaged drift is

    F(x) = x - x^3 + c exp(-1/2) sin(x),      A(x) = sigma^2,

and as eps -> 0 the law of X converges to that of dX = F(X) dt + sigma dW, whose invariant
density is rho(x) ∝ exp(2 int F / sigma^2) = exp((x^2 - x^4/2 - 2 c exp(-1/2) cos x) / sigma^2);
E[X^2] under rho is a 1-D quadrature. This script

1. writes the model as a TOML file (``Model.to_toml``) and reads it back (``load_model_file``):
   the same definition, hence the same ``source_hash`` and the same compiled module;
2. compiles it (first use; later uses load it from the cache) and simulates the full system,
   comparing E[X^2] at long times with the averaged SDE's invariant density;
3. estimates F(x) on a grid with the heterogeneous multiscale method (AveragingEstimator) and
   compares it with the closed form point by point (z-scores), and the quadrature limit of
   ``exact_limit`` with the closed form;
4. evaluates the drift with PyTorch (``Model.torch_functions``) and compares its autograd
   gradient with the analytic derivatives df/dx = 1 - 3x^2, df/dy = c cos(y).

References: G.A. Pavliotis, A.M. Stuart, Multiscale Methods (Springer 2008), Ch. 10 (averaging,
formal) and Ch. 17 (convergence); R.Z. Khasminskii, Kybernetika 4 (1968) 260-279; W. E,
B. Engquist, Commun. Math. Sci. 1 (2003) 87-132 (heterogeneous multiscale methods).

Run:  python examples/08_user_model.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import math
import time

import matplotlib.pyplot as plt
import numpy as np

import multiscale as ms
from multiscale import exact
from multiscale.validate import exact_limit, stationary_density

args = parse_args(__doc__)
q = args.quick
table = Table("A user-defined model: double well kicked by sin of a fast OU process")

C, SIGMA = 1.0, 1.0
model = ms.Model(
    "sin_kicked_well",
    slow={"x": "x - x^3 + c*sin(y)"},                # dX = f dt + alpha dW1
    fast={"y": "-(y - x)"},                           # dY = g/eps dt + beta/sqrt(eps) dW2
    slow_noise={"x": "sigma"}, fast_noise={"y": "sqrt(2)"},
    params={"c": C, "sigma": SIGMA}, scaling="averaging", default_eps=0.01,
    fast_invariant_density="exp(-(y - x)^2/2)",       # known fact: N(x, 1), gives the exact limit
    description="double well kicked by sin of a fast OU process (examples/08_user_model.py)",
)


def F_closed(x):
    """The averaged drift in closed form: x - x^3 + c exp(-1/2) sin(x)."""
    x = np.asarray(x, float)
    return x - x**3 + C * math.exp(-0.5) * np.sin(x)


# Exact answers: the closed form (E[X^2] under rho by the package's 1-D quadrature), and the
# package's quadrature of the declared fast density (exact_limit), checked against each other.
m2_exact = exact.stationary_moments_1d(
    lambda x: (x**2 - x**4 / 2 - 2 * C * math.exp(-0.5) * np.cos(x)) / SIGMA**2, powers=(2,))[2]

# 1. The model as a TOML file, read back: the same definition, hash and compiled module.
toml_path = f"{args.out}/sin_kicked_well.toml"
with open(toml_path, "w") as fh:
    fh.write(model.to_toml())
from_file = ms.load_model_file(toml_path)
same = from_file.source_hash() == model.source_hash()
table.note("TOML round trip: source_hash", from_file.source_hash()[:16], model.source_hash()[:16],
           "identical" if same else "DIFFERENT")
if not same:
    table.failures.append("TOML round trip")

# 2. Compile at first use (or load from the cache, $MULTISCALE_CACHE), then in-process reuse.
t = time.perf_counter()
info = ms.get_model(from_file)           # the compiled catalogue entry of the file's model
t_first = time.perf_counter() - t
t = time.perf_counter()
ms.get_model(model)                      # same source_hash: the module already loaded
t_again = time.perf_counter() - t
table.note("first use: compile or load (s)", f"{t_first:.2f}", "",
           "compiled" if t_first > 2.0 else "from the disk cache")
table.note("second use, same hash (s)", f"{t_again:.2g}", "", "in-process cache")

limit = exact_limit(info)                # F = E[f], A = E[alpha^2] by quadrature over y
xs = np.linspace(-2.5, 2.5, 101)
table.check("exact_limit F vs closed form (max)", np.max(np.abs(limit.drift(xs) - F_closed(xs))), None, 0.0,
            abs_tol=1e-8)
table.check("exact_limit A vs sigma^2 (max)", np.max(np.abs(limit.diffusion(xs) - SIGMA**2)), None, 0.0,
            abs_tol=1e-8)
x_grid, rho = stationary_density(limit.drift, limit.diffusion, -4.0, 4.0)
table.check("E[X^2], averaged SDE via exact_limit", np.trapezoid(x_grid**2 * rho, x_grid) / np.trapezoid(rho, x_grid),
            None, m2_exact, rel_tol=1e-6)

# The full system, from the file's model. State saved every 0.1; after a burn-in of 5 time units
# each path's time average is one sample, so paths give independent samples for the s.e.
n_paths, t_end = (1000, 15.0) if q else (20000, 30.0)
t = time.perf_counter()
full = ms.simulate(from_file, eps=0.002, dt=2e-4, t_end=t_end, n_paths=n_paths, seed=1, save_every=500,
                   threads=args.threads)
t_sim = time.perf_counter() - t
x = full.trajectory.sel(state="x").where(full.time > 5.0, drop=True).values   # (paths, times)
per_path = (x**2).mean(axis=1)
table.check("E[X^2], full system eps=0.002", per_path.mean(), per_path.std(ddof=1) / np.sqrt(per_path.size),
            m2_exact)
table.note("simulation time (s)", f"{t_sim:.2f}", "", f"{n_paths} paths, t_end = {t_end:g}")

# 3. The averaged drift by the heterogeneous multiscale method: at every point the fast process
#    runs with x frozen (16 replicas, `time` fast-time units each).
points = np.linspace(-2.0, 2.0, 21)
options = ms.AveragingOptions(dt=0.05, burn_in=10.0, time=200.0 if q else 2000.0, replicas=16, batch=10.0)
est = ms.AveragingEstimator(options, seed=2, threads=args.threads).fit(model, points)
F, F_se = est.result_.F.values[:, 0], est.result_.F_stderr.values[:, 0]
F_exact = F_closed(points)
for xv in (-1.5, -0.5, 0.5, 1.0, 1.5):
    i = int(np.argmin(np.abs(points - xv)))
    table.check(f"F({xv:+.1f}) = x - x^3 + c e^-1/2 sin x", F[i], F_se[i], F_exact[i])
table.check_all("F(x) on the whole grid", F, F_se, F_exact)

# 4. The drift as a differentiable PyTorch function: autograd vs the analytic derivatives.
try:
    import torch
except ImportError:
    table.note("torch gradient", "torch not installed", "", "skipped")
else:
    fn = model.torch_functions()
    xt = torch.linspace(-2.0, 2.0, 41, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    yt = torch.linspace(-3.0, 3.0, 41, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    gx, gy = torch.autograd.grad(fn.slow_drift(xt, yt).sum(), (xt, yt))
    xv, yv = xt.detach().numpy(), yt.detach().numpy()
    table.check("torch df/dx = 1 - 3x^2 (max err)", np.max(np.abs(gx.numpy() - (1 - 3 * xv**2))), None, 0.0,
                abs_tol=1e-12)
    table.check("torch df/dy = c cos(y) (max err)", np.max(np.abs(gy.numpy() - C * np.cos(yv))), None, 0.0,
                abs_tol=1e-12)

# Figure: F(x) against the closed form; histogram of X against rho.
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
xs = np.linspace(-2.1, 2.1, 200)
ax[0].plot(xs, F_closed(xs), "k-", label="exact F(x) = x - x³ + c e^(-1/2) sin x")
ax[0].plot(xs, xs - xs**3, "k:", lw=1, label="x - x³ (no coupling)")
ax[0].errorbar(points, F, yerr=2 * F_se, fmt="o", ms=4, color="C0", label="AveragingEstimator (±2 s.e.)")
ax[0].set(xlabel="x", ylabel="averaged drift F(x)", title="averaged drift of the user model")
ax[0].legend(fontsize=8)
ax[1].hist(x.ravel(), bins=np.linspace(-3, 3, 61), density=True, histtype="step", lw=1.5,
           label="full system, eps = 0.002")
ax[1].plot(x_grid, rho, "k--", lw=1, label="averaged SDE's invariant ρ (exact_limit)")
ax[1].set(xlabel="x", ylabel="density", title="invariant density of the slow variable")
ax[1].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/08_user_model.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
