"""User models compiled just in time, each figure against a baseline measured in the same run:

* ``first use``: compiling a model-language model into an extension module (empty cache),
  against importing the package (``import multiscale``) in a fresh process;
* ``cached load``: a second process loading the same model from the disk cache;
* ``throughput``: path-steps per second of the catalogue models written in the language
  (``ms.get_model(name).model``), against the same models from the built-in catalogue, the
  runs interleaved, best of ``--repeat``; the target is a ratio within 10% of 1.

    python benchmarks/bench_user_models.py [--json out.json] [--threads N]
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
import time

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import numpy as np  # noqa: E402

import multiscale as ms  # noqa: E402

# (model, params, paths, steps, dt): sizes of about a second per run on 2 cores
CASES = [
    ("fast_ou_linear", None, 20000, 2000, 1e-3),
    ("tilted_double_well", None, 20000, 2000, 1e-3),
    ("periodic_potential_quadratic", None, 20000, 2000, 1e-3),
    ("lorenz96", None, 200, 2000, 2e-4),
    ("lorenz96", {"sigma_x": 0.5, "sigma_y": 0.5}, 200, 2000, 2e-4),
]

_CHILD = """
import sys, time
t0 = time.perf_counter()
import multiscale as ms
t1 = time.perf_counter()
if sys.argv[1] == "model":
    ms.get_model(ms.get_model("fast_ou_linear").model)
print(t1 - t0, time.perf_counter() - t1)
"""


def _child(what: str, cache: str) -> tuple[float, float]:
    env = dict(os.environ, MULTISCALE_CACHE=cache, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", _CHILD, what], env=env, capture_output=True, text=True, check=True)
    a, b = out.stdout.split()
    return float(a), float(b)


def _rate(model, params, paths, steps, dt, threads) -> float:
    info = ms.get_model(model)
    kw = dict(t_end=steps * dt, dt=dt, n_paths=paths, seed=1, params=params, threads=threads)
    if info.uses_eps:
        kw["eps"] = info.default_eps
    t = time.perf_counter()
    ms.simulate(model, **kw)
    return paths * steps / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    res: dict = {"threads": a.threads or os.cpu_count(), "build": ms.build_info()["compiler"]}
    with tempfile.TemporaryDirectory() as cache:
        imp, _ = _child("import", cache)
        _, first = _child("model", cache)
        _, cached = _child("model", cache)
        res.update(import_seconds=imp, first_use_seconds=first, cached_load_seconds=cached)
        print(f"import multiscale {imp * 1e3:.0f} ms; first use (compile) {first:.1f} s = {first / imp:.0f}x the "
              f"import; cached load in a new process {cached * 1e3:.1f} ms = {cached / imp:.3f}x the import")
        os.environ["MULTISCALE_CACHE"] = cache
        rows = []
        for name, params, paths, steps, dt in CASES:
            user = ms.get_model(name).model
            ms.get_model(user)  # compiled outside the timing
            best = {"catalogue": 0.0, "user": 0.0}
            for _ in range(a.repeat):  # interleaved: drifts in machine load hit both alike
                best["catalogue"] = max(best["catalogue"], _rate(name, params, paths, steps, dt, a.threads))
                best["user"] = max(best["user"], _rate(user, params, paths, steps, dt, a.threads))
            ratio = best["user"] / best["catalogue"]
            label = name + ("" if not params else " (noisy)")
            rows.append({"model": label, "catalogue_path_steps_per_s": best["catalogue"],
                         "user_path_steps_per_s": best["user"], "ratio": ratio})
            print(f"{label:34s} catalogue {best['catalogue']:.3e}  user {best['user']:.3e} path-steps/s  "
                  f"ratio {ratio:.3f}")
        res["throughput"] = rows
        res["worst_ratio"] = float(np.min([r["ratio"] for r in rows]))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
