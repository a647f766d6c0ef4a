"""Rare events: adaptive multilevel splitting against the exact probability, and what plain
Monte Carlo would cost for the same error (reference problem 6a, model `ornstein_uhlenbeck`).

    dX = -X dt + sqrt(2) dW,   X_0 = x0 = 0.1.

The probability of reaching b before returning to a = 0 is the committor, exactly

    P = int_0^{x0} e^{y^2/2} dy / int_0^b e^{y^2/2} dy = erfi(x0/sqrt 2) / erfi(b/sqrt 2)

(1.78e-6 at b = 5, 8.9e-9 at b = 6; multiscale.validate.committor computes it by quadrature for
any 1-D diffusion). Plain Monte Carlo needs about 1/(p r^2) paths for a relative error r: 3e8
paths at b = 5 for 4%. Adaptive multilevel splitting (AMS) instead keeps N replicas, repeatedly
kills the k that went least far (the lowest maximum of X) and branches new ones from the
survivors at the killed level; the estimate (1 - k/N)^iterations x (fraction reaching b) is
unbiased, with a relative variance of about |ln p| / N per run. The error bar is the spread of
independent runs.

Both simulations use a Brownian-bridge test between steps, so a coarse step does not miss
crossings of a or b (without it the estimate would be biased by O(sqrt(dt))).

References: F. Cerou, A. Guyader, Stoch. Anal. Appl. 25 (2007) 417-443; C.-E. Brehier,
M. Gazeau, L. Goudenege, T. Lelievre, M. Rousset, Ann. Appl. Probab. 26 (2016) 3559-3601;
A. Guyader, N. Hengartner, E. Matzner-Lober, Appl. Math. Optim. 64 (2011) 171-196;
M. Broadie, P. Glasserman, S. Kou, Math. Finance 7 (1997) 325-349 (discrete-monitoring bias).

Run:  python examples/06_rare_events_ams.py [--quick] [--out examples_out]
"""
from _common import Table, parse_args  # command line, results table, exit status (beside this file)

import time

import matplotlib.pyplot as plt
import numpy as np

from multiscale.validate import AMSOptions, ams, committor, exact_limit, first_passage

args = parse_args(__doc__)
q = args.quick
table = Table("Problem 6a: P(reach b before 0 | x0 = 0.1) for the OU process")

limit = exact_limit("ornstein_uhlenbeck")        # drift -x, diffusion 2
X0, A = 0.1, 0.0


def exact_p(b):
    return float(committor(limit.drift, limit.diffusion, A, b, X0))


# Plain Monte Carlo where it still works (p = 2.8e-3), timed to know the cost of one path.
b_mc, n_mc = 3.0, 50_000 if q else 400_000
t0 = time.perf_counter()
fp = first_passage("ornstein_uhlenbeck", x0=X0, lo=A, hi=b_mc, dt=1e-3, n_paths=n_mc, max_time=100.0, seed=2,
                   threads=args.threads)
sec_per_path = (time.perf_counter() - t0) / n_mc
p_mc, se_mc = fp.p_hi
table.check(f"plain MC, b = {b_mc:g} ({n_mc} paths)", p_mc, se_mc, exact_p(b_mc))

# AMS at increasingly rare levels.
options = AMSOptions(n_replicas=100, kill=5, n_runs=20 if q else 40, dt=1e-3)
levels = (3.0, 5.0) if q else (3.0, 4.0, 5.0, 6.0)
results = []
for b in levels:
    r = ams("ornstein_uhlenbeck", x0=X0, a=A, b=b, options=options, seed=1, threads=args.threads)
    p = exact_p(b)
    table.check(f"AMS, b = {b:g}", r.probability, r.stderr, p)
    # Plain MC paths for the same relative error, at the measured cost per path.
    rel = r.stderr / r.probability
    n_needed = (1 - p) / (p * rel**2)
    table.note(f"  plain MC for the same {100 * rel:.1f}% error",
               f"{n_needed:.2g} paths, {n_needed * sec_per_path:.2g} s",
               "", f"AMS took {r.seconds:.2g} s: MC/AMS time = {n_needed * sec_per_path / r.seconds:.2g}")
    results.append((b, r.probability, r.stderr, p, r.seconds, n_needed * sec_per_path))

# Figure: P(b) on a log scale; wall time of AMS against that of plain MC for the same error.
b_, pr, se, pe, t_ams, t_mc = map(np.array, zip(*results))
bs = np.linspace(2.5, 6.2, 60)
fig, ax = plt.subplots(1, 2, figsize=(11, 4))
ax[0].plot(bs, [exact_p(b) for b in bs], "k-", label="exact committor")
ax[0].errorbar(b_, pr, yerr=2 * se, fmt="o", label="AMS (±2 s.e.)")
ax[0].errorbar([b_mc], [p_mc], yerr=[2 * se_mc], fmt="s", label="plain Monte Carlo")
ax[0].set(yscale="log", xlabel="level b", ylabel="P(reach b before 0)", title="rare-event probability")
ax[0].legend(fontsize=8)
ax[1].plot(b_, t_mc, "s-", label="plain MC (estimated from its cost per path)")
ax[1].plot(b_, t_ams, "o-", label="AMS (measured)")
ax[1].set(yscale="log", xlabel="level b", ylabel="wall time for the same relative error (s)",
          title="cost")
ax[1].legend(fontsize=8)
fig.tight_layout()
path = f"{args.out}/06_rare_events_ams.png"
fig.savefig(path, dpi=120)

table.finish(args, [path])
