"""Training a local Lorenz-96 closure from 1e6 ring transition pairs with 10 members.

Data: the coupled two-scale Lorenz-96 (catalogue ``lorenz96``: K = 8, J = 32, h = 1, b = 10,
c = 10, F = 20), 8 independent paths of 625 time units after a 5-unit spin-up, sampled every 0.005: 1e6
transition pairs of the ring, each 8 site samples of the shared networks (8e6 site samples).
Fit: the pipeline's closure (stencil 3, hidden (16, 16), 10 members, 4000 Adam steps of 2048
site rows, the drift closure at the sampling lag that the lag rule picks on these data), on
``workers=2`` member groups and on one thread, and with the default hidden layers (48, 48), in
the same run; the figure is pair-members per second. Target: under 60 s on 2 threads.

    python benchmarks/bench_ring_train.py [--t-end 630] [--members 10] [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import multiscale as ms  # noqa: E402
from multiscale._ring_pipeline import resolved_model  # noqa: E402
from multiscale.surrogate import LocalClosureEstimator, RingClosure  # noqa: E402
from multiscale.validate import independent_starts  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--t-end", type=float, default=630.0)
    ap.add_argument("--members", type=int, default=10)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    info = ms.get_model("lorenz96")
    p = info.resolve_params({})
    K = int(p["K"])
    t0 = time.perf_counter()
    x0, y0 = independent_starts(info, p, 8, seed=1)  # the system has no noise: distinct starts
    ds = ms.simulate(info, dt=2e-4, t_end=a.t_end, n_paths=8, seed=1, x0=x0, y0=y0, save_every=25, save_fast=False,
                     threads=2)
    ds = ds.isel(time=slice(1000, None))
    print(f"data: {ds.sizes['realization']} paths x {ds.sizes['time']} samples "
          f"({ds.sizes['realization'] * (ds.sizes['time'] - 1):.3g} pairs) in {time.perf_counter() - t0:.1f} s")
    structure = RingClosure(stencil=3, resolved=resolved_model(info, p, None), params=p)
    rows = []
    for hidden, workers in (((16, 16), 2), ((16, 16), 1), ((48, 48), 2)):
        t = time.perf_counter()
        est = LocalClosureEstimator(ms.SurrogateOptions(members=a.members, hidden=hidden, epochs=4000, workers=workers,
                                                        threads=1),
                                    structure).fit(ds)
        secs = time.perf_counter() - t
        n = est.summary_["n_pairs"]
        rows.append({"hidden": list(hidden), "workers": workers, "seconds": secs, "pairs": n, "site_samples": n * K,
                     "method": est.summary_["method"], "epochs": est.summary_["epochs"],
                     "pair_members_per_second": n * a.members / secs})
        print(f"hidden {hidden}, workers={workers}: {secs:.1f} s ({est.summary_['method']} at lag {est.summary_['lag']:g}, "
              f"{est.summary_['epochs']} steps), {n:.3g} pairs x {a.members} members: "
              f"{n * a.members / secs:.3g} pair-members/s")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
