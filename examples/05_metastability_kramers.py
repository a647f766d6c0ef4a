"""Metastability: mean first passage times against the exact integral and Eyring-Kramers
(reference problem 5, model `double_well`).

    dX = (X - X^3) dt + sigma dW,    U(x) = x^4/4 - x^2/2,   D = sigma^2/2.

The minima are at -1 and +1 (U'' = 2), the saddle at 0 (U'' = -1), the barrier is 1/4. The mean
first passage time from -1 to the first hitting of +1 is exactly the 1-D integral

    T = (1/D) int_{-1}^{1} e^{U(y)/D} int_{-inf}^{y} e^{-U(z)/D} dz dy

(multiscale.validate.mfpt, by quadrature), and the Eyring-Kramers law gives its small-noise
asymptotics T_K = 2 pi / sqrt(U''(-1) |U''(0)|) e^{Delta U / D} = pi sqrt(2) e^{1/(2 sigma^2)},
with relative corrections T = T_K (1 + 3D/2 + 57 D^2/8 + ...). Kramers' law is 16% low at
sigma = 0.4: the simulated MFPT must agree with the exact integral, not with T_K.

The simulation (multiscale.validate.mean_first_passage_time) runs every path in a compiled
kernel until it first reaches +1, with a Brownian-bridge test between steps that catches the
crossings a coarse step would miss.

References: H.A. Kramers, Physica 7 (1940) 284-304; A. Bovier, V. Gayrard, M. Klein, J. Eur.
Math. Soc. 6 (2004) 399-424; N. Berglund, Markov Process. Relat. Fields 19 (2013) 459-490;
C.W. Gardiner, Handbook of Stochastic Methods, Ch. 5 (mean exit times).

Run:  python examples/05_metastability_kramers.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import math

import matplotlib.pyplot as plt
import numpy as np

from multiscale.validate import exact_limit, mean_first_passage_time, mfpt

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 5: mean first passage time -1 -> +1 of the double well")

sigmas = (0.5, 0.4) if q else (0.5, 0.45, 0.4, 0.35, 0.3)
n_paths = 4000 if q else 20000
rows = []
for sigma in sigmas:
    D = sigma**2 / 2
    limit = exact_limit("double_well", {"sigma": sigma})     # drift x - x^3, diffusion sigma^2
    T_exact = mfpt(limit.drift, limit.diffusion, -1.0, 1.0)
    T_K = 2 * math.pi / math.sqrt(2.0 * 1.0) * math.exp(0.25 / D)
    # Every path must arrive: max_time far beyond the mean (the passage time is ~ exponential).
    r = mean_first_passage_time("double_well", params={"sigma": sigma}, x0=-1.0, target=1.0, dt=0.01,
                                n_paths=n_paths, max_time=40 * T_exact, seed=3, threads=args.threads)
    table.check(f"MFPT, sigma = {sigma:g}", r.mean, r.stderr, T_exact)
    T_K2 = T_K * (1 + 1.5 * D + 57 / 8 * D**2)
    table.note("  Eyring-Kramers T_K", f"{T_K:.6g}", f"{T_exact:.6g}",
               f"{100 * (T_K / T_exact - 1):+.1f}% ({(r.mean - T_K) / r.stderr:.0f} s.e. below the simulation)")
    table.note("  T_K (1 + 3D/2 + 57D^2/8)", f"{T_K2:.6g}", f"{T_exact:.6g}", f"{100 * (T_K2 / T_exact - 1):+.1f}%")
    rows.append((sigma, r.mean, r.stderr, T_exact, T_K))

# Figure: the Arrhenius plot, and the ratio T / T_K, where the difference shows.
s, m, se, Te, Tk = map(np.array, zip(*rows))
sg = np.linspace(0.28, 0.55, 40)
Dg = sg**2 / 2
curve = np.array([mfpt(L.drift, L.diffusion, -1.0, 1.0)
                  for L in (exact_limit("double_well", {"sigma": v}) for v in sg)])
Tk_g = math.pi * math.sqrt(2) * np.exp(1 / (2 * sg**2))
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].plot(1 / (2 * sg**2), curve, "k-", label="exact MFPT (quadrature)")
ax[0].plot(1 / (2 * sg**2), Tk_g, "C3--", label="Eyring-Kramers T_K")
ax[0].errorbar(1 / (2 * s**2), m, yerr=2 * se, fmt="o", label="simulation (±2 s.e.)")
ax[0].set(yscale="log", xlabel="ΔU / D = 1/(2σ²)", ylabel="mean first passage time -1 → +1",
          title="Arrhenius plot of the double well")
ax[0].legend(fontsize=8)
ax[1].plot(Dg, curve / Tk_g, "k-", label="exact T / T_K")
ax[1].plot(Dg, 1 + 1.5 * Dg + 57 / 8 * Dg**2, "C2:", label="1 + 3D/2 + 57D²/8")
ax[1].axhline(1, color="C3", ls="--", label="Eyring-Kramers")
ax[1].errorbar(s**2 / 2, m / Tk, yerr=2 * se / Tk, fmt="o", label="simulation (±2 s.e.)")
ax[1].set(xlabel="D = σ²/2", ylabel="T / T_K", title="the prefactor correction")
ax[1].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/05_metastability_kramers.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
