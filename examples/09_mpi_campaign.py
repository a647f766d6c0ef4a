"""A parameter sweep as a campaign: one TOML spec, run on one process or on MPI ranks, read back
as one netCDF file (model `fast_ou_linear`, reference problem 1a over a grid of c and eps).

    dX = (X - X^3 + c Y) dt + dU,    dY = -(Y - X)/eps dt + sqrt(2/eps) dV

For every grid point (eps, c) the campaign simulates the full system (split into path ranges,
one task each), estimates the averaged drift F on a grid of x (blocks of points, one task each)
and trains a small neural effective SDE on those estimates. The exact answers used to check the
table: F(x) = (1 + c) x - x^3, so F(1) = c; and the invariant law of the averaged SDE,
rho ∝ exp((1 + c) x^2 - x^4/2), whose E[X^2] the full system approaches as eps -> 0 (by 1-D
quadrature: 1.2461 for c = 0.5, 1.7043 for c = 1).

Tasks, their seeds and their order come from the spec alone, so the results do not depend on
the number of ranks. The folder survives crashes: running the same command again resumes (here,
a second run finds every task done and only merges). See README "Campaigns".

References: Pavliotis & Stuart, Multiscale Methods (2008), Ch. 10; Khasminskii (1968).

Run:  python examples/09_mpi_campaign.py [--quick] [--out examples_out]
      (then, on 2 ranks: the mpiexec line it prints)
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import os
import shutil
import sys

import matplotlib.pyplot as plt
import numpy as np

import multiscale as ms
from multiscale import exact
from multiscale.campaign import format_plan, load_spec, run_campaign

args = parse_args(__doc__)
q = args.quick
table = Table("Campaign: problem 1a over a grid of (eps, c)")

name = "campaign-quick" if q else "campaign"
spec_path = os.path.join(args.out, f"{name}.toml")
folder = os.path.join(args.out, name)
with open(spec_path, "w") as f:
    f.write(f"""\
[campaign]
name = "fast-ou-sweep"
seed = 2026
model = "fast_ou_linear"

[grid]                          # the Cartesian product of the axes
eps = {[0.01] if q else [0.01, 0.05]}
[grid.params]
c = [0.5, 1.0]

[simulate]                      # the full system, in path ranges of paths_per_task
t_end = {10.0 if q else 20.0}
dt = 1e-3
n_paths = {1000 if q else 4000}
paths_per_task = {500 if q else 1000}
save_every = 0.5

[average]                       # F(x) and A(x), in blocks of points_per_task slow points
x_points = {{ start = -2.0, stop = 2.0, num = 9 }}
points_per_task = 5
dt = 0.05
time = {200.0 if q else 1000.0}
replicas = 16

[train]                         # a small effective SDE per grid point, from its estimates
members = 3
hidden = [16, 16]
epochs = {200 if q else 600}
lbfgs_steps = {100 if q else 300}
""")
spec = load_spec(spec_path)
print(format_plan(spec))
python = os.path.basename(sys.executable)
print(f"\nspec written to {spec_path}; the same run on 2 MPI ranks would be:\n"
      f"  mpiexec -n 2 {python} -m mpi4py -m multiscale campaign run {spec_path} --out {folder}\n")

if os.path.exists(folder):       # a fresh run each time (a kept folder would simply be resumed)
    shutil.rmtree(folder)
merged = run_campaign(spec, folder, progress=False)
ds = ms.open_dataset(merged)
print(f"merged: {merged}  (variables: {', '.join(sorted(ds.data_vars)[:12])}, ...)")

# One row per grid point, from the merged dataset.
x_avg = ds["x"].values[:, 0]                    # averaging points (the same at every grid point)
x_eval = ds["x_eval"].values[:, 0]              # where the learned drift was evaluated
i1, j1 = int(np.argmin(np.abs(x_avg - 1.0))), int(np.argmin(np.abs(x_eval - 1.0)))
rows = []
for g in range(ds.sizes["grid"]):
    eps, c = float(ds["eps"].values[g]), float(ds["param_c"].values[g])
    traj = ds["trajectory"].isel(grid=g).sel(state="x")
    x = traj.where(ds["time"] > 5.0, drop=True).values            # (realization, time) after burn-in
    per_path = (x**2).mean(axis=1)
    m2, se2 = per_path.mean(), per_path.std(ddof=1) / np.sqrt(per_path.size)
    ref2 = exact.fast_ou_linear_moments(c=c, powers=(2,))[2]
    table.check(f"eps={eps:g} c={c:g}: E[X^2], full system", m2, se2, ref2)
    F1, se1 = float(ds["F"].values[g, i1, 0]), float(ds["F_stderr"].values[g, i1, 0])
    table.check(f"eps={eps:g} c={c:g}: F(1) = c", F1, se1, c)
    b1 = float(ds["surrogate_drift"].values[g, j1, 0])
    table.note(f"eps={eps:g} c={c:g}: learned drift at 1", f"{b1:.4g}", f"{c:g}", f"{100 * (b1 / c - 1):+.1f}%")
    learned = ms.load_surrogate(os.path.join(folder, str(ds["surrogate_file"].values[g])))   # surrogates/<point>.h5
    rows.append((eps, c, ds["F"].values[g, :, 0], ds["F_stderr"].values[g, :, 0], learned, m2, se2, ref2))

# Figure: F(x) per grid point with the learned drift and (1 + c) x - x^3; E[X^2] per grid point.
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
xs = np.linspace(-2.1, 2.1, 200)
for k, (eps, c, F, se, learned, m2, se2, ref2) in enumerate(rows):
    ax[0].errorbar(x_avg + 0.02 * k, F, yerr=2 * se, fmt="o", ms=3, color=f"C{k}", label=f"eps={eps:g}, c={c:g}")
    ax[0].plot(xs, learned.drift(xs)[:, 0], "-", lw=0.8, color=f"C{k}")
    ax[0].plot(xs, (1 + c) * xs - xs**3, "k:", lw=0.8)
    ax[1].errorbar([k], [m2], yerr=[2 * se2], fmt="o", color=f"C{k}")
    ax[1].plot([k - 0.3, k + 0.3], [ref2, ref2], "k-", lw=1)
ax[0].set(xlabel="x", ylabel="F(x)", title="estimates (dots), learned (lines), exact (dotted)")
ax[0].legend(fontsize=8)
ax[1].set(xticks=range(len(rows)), xticklabels=[f"eps={r[0]:g}\nc={r[1]:g}" for r in rows],
          ylabel="E[X²] (full system, ±2 s.e.)", title="invariant second moment vs exact (lines)")
fig.tight_layout()
path = f"{args.out}/09_mpi_campaign.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
