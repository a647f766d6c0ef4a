"""Validation layer costs, each as a ratio against a baseline measured in the same run:

* ``first passage``: path-steps/s of the first-passage kernel (problem 5, bridge on and off)
  against the ensemble ``simulate`` kernel on the same model and step (its baseline);
* ``AMS vs plain Monte Carlo``: problem 6a (b = 5, p = 1.78e-6): the work (path-steps) AMS
  spends for its relative error, against the work plain Monte Carlo would need for the same
  relative error, N = (1 - p)/(p rel^2) paths of the measured mean length;
* ``surrogate segments``: steps/s of the surrogate's first passages in the compiled kernel with
  the tabulated 1-D coefficients against the same kernel evaluating the networks every step.

    python benchmarks/bench_validate.py [--threads 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import sys
import time

import numpy as np

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import multiscale as ms  # noqa: E402
from multiscale.validate import AMSOptions, ams, first_passage  # noqa: E402
from multiscale.validate._passage import make_engine  # noqa: E402


def _best(fn, repeats: int):
    best, out = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    res: dict = {"threads": a.threads}

    # 1. first-passage kernel against the simulate kernel (problem 5, dt 0.01)
    n, dt, T = 4000, 0.01, 20.0
    t_sim, _ = _best(lambda: ms.simulate("double_well", params={"sigma": 0.4}, x0=-1.0, dt=dt, t_end=T, n_paths=n,
                                         seed=1, save_times=[], threads=a.threads), a.repeats)
    sim_rate = n * T / dt / t_sim

    def fp(bridge: bool):
        r = first_passage("double_well", params={"sigma": 0.4}, x0=-1.0, hi=1.0, dt=dt, n_paths=n, max_time=1e4,
                          seed=1, bridge=bridge, threads=a.threads)
        return np.nansum(r.time) / dt

    for bridge in (False, True):
        t, steps = _best(lambda: fp(bridge), a.repeats)
        res[f"first_passage_bridge_{bridge}"] = {"path_steps_per_s": steps / t, "ratio_to_simulate": steps / t / sim_rate}
    res["simulate_path_steps_per_s"] = sim_rate

    # 2. AMS against plain Monte Carlo (problem 6a, b = 5)
    p_exact = 1.7839662025e-06
    opts = AMSOptions(n_replicas=100, kill=5, n_runs=40, dt=1e-3)
    counted = {"steps": 0}
    import multiscale.validate._passage as P

    orig = P._CompiledEngine.run

    def counting(self, states, ids, levels, lo, hi, max_steps, seed, bridge):
        out, steps, xmax = orig(self, states, ids, levels, lo, hi, max_steps, seed, bridge)
        counted["steps"] += int(steps.sum())
        return out, steps, xmax

    P._CompiledEngine.run = counting
    try:
        t0 = time.perf_counter()
        r = ams("ornstein_uhlenbeck", x0=0.1, a=0.0, b=5.0, options=opts, seed=1, threads=a.threads)
        t_ams = time.perf_counter() - t0
    finally:
        P._CompiledEngine.run = orig
    rel = r.stderr / r.probability
    mc = first_passage("ornstein_uhlenbeck", x0=0.1, lo=0.0, hi=5.0, dt=1e-3, n_paths=20000, max_time=100.0, seed=2,
                       threads=a.threads)
    mean_steps = float(np.nanmean(mc.time)) / 1e-3
    mc_paths = (1 - p_exact) / (p_exact * rel**2)
    res["ams_6a"] = {"p": r.probability, "stderr": r.stderr, "exact": p_exact, "seconds": t_ams,
                     "path_steps": counted["steps"], "relative_error": rel,
                     "plain_mc_path_steps_for_same_error": mc_paths * mean_steps,
                     "work_ratio_mc_over_ams": mc_paths * mean_steps / counted["steps"]}

    # 3. surrogate first passages in the kernel: 1-D tables against the networks every step
    sde = ms.EffectiveSDE(1, members=10, hidden=(48, 48), seed=0)
    sde.set_scaling(0.0, 1.5, 0.0, 1.0, 1.0, x_lo=-3.0, x_hi=3.0)
    eng = make_engine(sde, dt=1e-2, threads=a.threads)
    m = 20000
    lev = np.full(m, np.inf)

    def seg(tables):
        eng.tables = tables
        st = np.zeros((m, 1))
        _, steps, _ = eng.run(st, np.arange(m, dtype=np.uint32), lev, -1.0, 1.0, 2000, 1, True)
        return int(steps.sum())

    seg(True)  # builds the tables
    t_tab, s_tab = _best(lambda: seg(True), a.repeats)
    t_net, s_net = _best(lambda: seg(False), 1)
    res["surrogate_segments"] = {"tabulated_steps_per_s": s_tab / t_tab, "network_steps_per_s": s_net / t_net,
                                 "ratio": (s_tab / t_tab) / (s_net / t_net)}

    print(f"threads {a.threads}")
    print(f"simulate kernel (baseline): {sim_rate:.3g} path-steps/s")
    for bridge in (False, True):
        q = res[f'first_passage_bridge_{bridge}']
        print(f"first-passage kernel, bridge {'on ' if bridge else 'off'}: {q['path_steps_per_s']:.3g} path-steps/s "
              f"= {q['ratio_to_simulate']:.2f}x simulate")
    q = res["ams_6a"]
    print(f"AMS 6a (b=5): p = {q['p']:.4g} +- {q['stderr']:.2g} (exact {p_exact:.4g}), {q['seconds']:.1f} s, "
          f"{q['path_steps']:.3g} path-steps; plain MC for the same {100 * rel:.1f}% error: "
          f"{q['plain_mc_path_steps_for_same_error']:.3g} path-steps = {q['work_ratio_mc_over_ams']:.3g}x more work")
    q = res["surrogate_segments"]
    print(f"surrogate first passages: tabulated {q['tabulated_steps_per_s']:.3g} steps/s, network every step "
          f"{q['network_steps_per_s']:.3g} steps/s: {q['ratio']:.1f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
