"""Regenerate data/reference_values.json: the exact reference numbers of the benchmark problems.

Every number is computed by the package's own code (``multiscale.exact`` and the 1-D exact
formulas of ``multiscale.validate``: ``exact_limit``, ``mfpt``, ``committor``), with the
parameters it was computed for recorded beside it. ``tests/test_data.py`` recomputes them and
compares (relative tolerance 1e-10), so the file cannot drift from the code.

Run (from the repository root):  python data/make_reference_values.py
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "reference_values.json"


def _moments(d: dict) -> dict[str, float]:
    return {f"E[X^{k}]": float(v) for k, v in d.items()}


def compute() -> dict:
    """The reference values: ``{"entries": {key: {"problem", "function", "params", "values"}}}``."""
    from multiscale import exact
    from multiscale.validate import committor, exact_limit, mfpt

    e: dict[str, dict] = {}

    def add(key, problem, function, params, values):
        e[key] = {"problem": problem, "function": function, "params": params,
                  "values": {k: float(v) for k, v in values.items()}}

    add("fast_ou_linear_moments", "1a", "multiscale.exact.fast_ou_linear_moments", {"c": 0.5, "sigma": 1.0},
        _moments(exact.fast_ou_linear_moments(c=0.5, sigma=1.0, powers=(1, 2, 4))))
    add("fast_ou_linear_moments_c1", "1a", "multiscale.exact.fast_ou_linear_moments", {"c": 1.0, "sigma": 1.0},
        _moments(exact.fast_ou_linear_moments(c=1.0, sigma=1.0, powers=(2, 4))))
    add("fast_ou_quadratic_moments", "1b", "multiscale.exact.fast_ou_quadratic_moments", {"c": 0.5, "sigma": 1.0},
        _moments(exact.fast_ou_quadratic_moments(c=0.5, sigma=1.0, powers=(1, 2, 4))))
    add("tilted_double_well_moments", "2", "multiscale.exact.tilted_double_well_moments",
        {"a0": 0.1, "lam": 1.5}, _moments(exact.tilted_double_well_moments(a0=0.1, lam=1.5, powers=(1, 2, 4))))
    add("tilted_double_well_prob_positive", "2", "multiscale.exact.tilted_double_well_prob_positive",
        {"a0": 0.1, "lam": 1.5}, {"P[X>0]": exact.tilted_double_well_prob_positive(a0=0.1, lam=1.5)})
    add("periodic_homogenized_K", "3a", "multiscale.exact.periodic_homogenized_K", {"A": 1.0, "sigma": 0.5},
        {"K": exact.periodic_homogenized_K(A=1.0, sigma=0.5),
         "sigma*K": 0.5 * exact.periodic_homogenized_K(A=1.0, sigma=0.5)})
    add("fast_ou_noise_moments", "4", "multiscale.exact.fast_ou_noise_moments", {"ito_correction": True},
        _moments(exact.fast_ou_noise_moments(powers=(2, 4), ito_correction=True)))
    add("fast_ou_noise_moments_no_ito", "4", "multiscale.exact.fast_ou_noise_moments", {"ito_correction": False},
        _moments(exact.fast_ou_noise_moments(powers=(2, 4), ito_correction=False)))
    add("double_well_moments", "5", "multiscale.exact.double_well_moments", {"sigma": 0.4},
        _moments(exact.double_well_moments(sigma=0.4, powers=(2, 4))))
    lim = exact_limit("double_well", {"sigma": 0.4})
    add("double_well_mfpt", "5", "multiscale.validate.mfpt(exact_limit('double_well'))",
        {"sigma": 0.4, "x0": -1.0, "target": 1.0},
        {"mfpt": mfpt(lim.drift, lim.diffusion, -1.0, 1.0),
         "eyring_kramers": math.pi * math.sqrt(2) * math.exp(1 / 0.32)})
    lim = exact_limit("ornstein_uhlenbeck")
    add("ornstein_uhlenbeck_committor", "6a", "multiscale.validate.committor(exact_limit('ornstein_uhlenbeck'))",
        {"theta": 1.0, "D": 1.0, "a": 0.0, "b": 5.0, "x": 0.1},
        {"committor": float(committor(lim.drift, lim.diffusion, 0.0, 5.0, 0.1))})
    add("ou_second_moment", "OU", "multiscale.exact.ou_second_moment", {"t": 1.0, "theta": 1.0, "D": 1.0, "x0": 1.0},
        {"E[X_t^2]": exact.ou_second_moment(1.0, 1.0, 1.0, 1.0)})
    xs = [-1.5, -0.5, 0.0, 0.5, 1.5]
    add("fast_ou_linear_drift", "1a", "multiscale.exact.fast_ou_linear_drift", {"c": 0.5, "x": xs},
        {f"F({x:+g})": v for x, v in zip(xs, np.asarray(exact.fast_ou_linear_drift(np.array(xs), 0.5)))})
    add("tilted_double_well_drift", "2", "multiscale.exact.tilted_double_well_drift",
        {"a0": 0.1, "lam": 1.5, "x": xs},
        {f"F({x:+g})": v for x, v in zip(xs, np.asarray(exact.tilted_double_well_drift(np.array(xs), 0.1, 1.5)))})
    add("fast_ou_noise_drift_diffusion", "4", "multiscale.exact.fast_ou_noise_drift/diffusion", {"x": xs},
        {**{f"F({x:+g})": v for x, v in zip(xs, np.asarray(exact.fast_ou_noise_drift(np.array(xs))))},
         **{f"A({x:+g})": v for x, v in zip(xs, np.asarray(exact.fast_ou_noise_diffusion(np.array(xs))))}})
    return {"description": "exact reference values of the benchmark problems (docs/reference_problems.md), "
                           "computed by the multiscale package; regenerate with python data/make_reference_values.py",
            "entries": e}


def main() -> None:
    OUT.write_text(json.dumps(compute(), indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
