"""Regenerate data/lorenz96_short.nc: a short two-scale Lorenz-96 trajectory set (slow variables).

Model ``lorenz96`` with its default parameters (K = 8 slow, J = 32 fast per slow variable,
h = 1, b = 10, c = 10, F = 20, no noise), 4 paths, dt = 2e-4, t_end = 2, saved every 0.05
(every 250 steps), simulated by ``ms.simulate`` with seed 2024 and one thread. The dynamics are
deterministic, so the paths differ by their initial slow states: the model's default plus
0.1 N(0, 1) perturbations drawn from ``numpy.random.default_rng(seed)``; the fast variables
start at the model's default. Only the slow variables X are stored (NetCDF-3, float64, scipy
engine), with the settings as attributes. ``tests/test_data.py`` reruns this simulation and
requires bitwise equality.

Run (from the repository root):  python data/make_lorenz96_short.py
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "lorenz96_short.nc"
SETTINGS = {"model": "lorenz96", "n_paths": 4, "dt": 2e-4, "t_end": 2.0, "save_every": 250, "seed": 2024,
            "perturbation": 0.1, "threads": 1}


def compute(settings: dict = SETTINGS):
    """The slow trajectories as an xarray Dataset (variable ``X``: realization x time x k)."""
    import xarray as xr

    import multiscale as ms

    s = settings
    info = ms.get_model(s["model"])
    params = info.resolve_params(None)
    x_init, _ = info.default_initial(params)
    rng = np.random.default_rng(s["seed"])
    x0 = np.asarray(x_init, float)[None, :] + s["perturbation"] * rng.standard_normal((s["n_paths"], x_init.size))
    ds = ms.simulate(s["model"], dt=s["dt"], t_end=s["t_end"], n_paths=s["n_paths"], seed=s["seed"], x0=x0,
                     save_every=s["save_every"], save_fast=False, threads=s["threads"])
    slow, _ = info.state_names(params)
    X = ds.trajectory.sel(state=list(slow)).values
    attrs = {"title": "two-scale Lorenz-96, slow variables, short trajectories (multiscale test data)",
             "regenerate": "python data/make_lorenz96_short.py",
             "settings_json": json.dumps(s, sort_keys=True), "params_json": json.dumps(params, sort_keys=True)}
    return xr.Dataset({"X": (("realization", "time", "k"), X), "x0": (("realization", "k"), x0)},
                      coords={"realization": np.arange(s["n_paths"]), "time": ds.time.values,
                              "k": np.arange(X.shape[2])}, attrs=attrs)


def main() -> None:
    compute().to_netcdf(OUT, engine="scipy")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
