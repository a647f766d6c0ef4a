"""Draw docs/lag_ladder.png, the guide's figure of the lag rule (needs the plot extra).

Three data sets: problem 1a (averaging, eps = 0.01) and problem 2 (metastable, eps = 0.01)
sampled every 0.02, which does not resolve the fast scale, and problem 3a (fast periodic
potential, eps^2 = 0.01) sampled every 1e-4, which does. For each, the apparent rate v / lag
and the differenced rate d of the locally de-trended increments, with the rule's choice.

    python docs/make_lag_figure.py
"""
from __future__ import annotations

import math
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import multiscale as ms  # noqa: E402
from multiscale import exact as exact_answers  # noqa: E402
from multiscale.surrogate._train import _lag_rule, lag_ladder  # noqa: E402


def main() -> None:
    cases = []
    for name, title, a in (("fast_ou_linear", "problem 1a, h = 0.02 (eps = 0.01)", 1.0),
                           ("tilted_double_well", "problem 2, h = 0.02 (eps = 0.01)", 2.0)):
        ds = ms.simulate(name, eps=0.01, dt=1e-3, t_end=200.0, n_paths=32, seed=5, save_every=20)
        cases.append((title, ds.trajectory.sel(state=["x"]).values, 0.02, a))
    x0 = np.random.default_rng(1).normal(0.0, math.sqrt(0.5), 32)
    ds = ms.simulate("periodic_potential_quadratic", eps=0.1, dt=2e-5, t_end=4.0, n_paths=32, seed=4, x0=x0,
                     save_every=5)
    ref = 2 * 0.5 * exact_answers.periodic_homogenized_K(A=1.0, sigma=0.5)
    cases.append(("problem 3a, h = 1e-4 (eps^2 = 0.01)", ds.trajectory.values, 1e-4, ref))
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (title, arr, h, exact) in zip(axes, cases):
        lad = lag_ladder(arr, h)
        k, rule = _lag_rule(lad)
        lags = lad["k"] * h
        ax.plot(lags, lad["v"][:, 0], "o-", color="0.6", label="apparent rate v / lag")
        ax.errorbar(lags[:-1], lad["d"][:, 0], yerr=2 * lad["d_se"][:, 0], fmt="s-", color="C0",
                    label="differenced rate d")
        ax.axvline(k * h, color="C2", lw=2, label=f"chosen lag {k * h:.3g}")
        if rule["knee"]:
            ax.axvline(rule["knee"] * h, color="C3", ls="--", label="fast-scale knee")
        if rule["curvature"]:
            ax.axvline(rule["curvature"] * h, color="C1", ls=":", label="curvature from")
        if exact:
            ax.axhline(exact, color="k", lw=0.8, label="exact A of the limit")
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("lag")
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("diffusion rate")
    fig.tight_layout()
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "lag_ladder.png")
    fig.savefig(out, dpi=110)
    print("wrote", out)


if __name__ == "__main__":
    main()
