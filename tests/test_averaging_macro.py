"""The HMM macro-solver (AveragedSDE) and the `multiscale average` command."""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms
from multiscale import _core, exact

PKG_PARENT = Path(ms.__file__).resolve().parents[1]
CWD = Path(tempfile.gettempdir())  # any folder without the sources; every command names its outputs


@pytest.fixture(scope="module")
def sde_1a():
    x = np.linspace(-2.5, 2.5, 101)
    est = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, time=400.0, batch=10.0), seed=4)
    return est.fit("fast_ou_linear", x).fetch_model()


def test_macro_step_is_the_interpolated_sde(sde_1a):
    """Two Euler-Maruyama steps of the compiled tabulated SDE equal the NumPy interpolation,
    with the kernel's own normals."""
    rng = np.random.default_rng(0)
    x0 = rng.uniform(-3.5, 3.5, (57, 1))  # includes both extrapolation regions
    dt = 1e-3
    ds = sde_1a.simulate(t_end=2 * dt, dt=dt, x0=x0, n_paths=57, seed=9, save_every=1)
    x = x0[:, 0]
    for step in range(2):
        z = _core.normals(9, 0, 57, step, 1, False)[:, 0]
        x = x + sde_1a.drift(x) * dt + np.sqrt(sde_1a.diffusion(x)) * np.sqrt(dt) * z
        np.testing.assert_allclose(ds["trajectory"].values[:, step + 1, 0], x, rtol=1e-12, atol=1e-12)


def test_macro_solver_invariant_law_matches_exact_averaged_sde(sde_1a):
    """Problem 1a: the estimated averaged SDE reproduces the exact stationary E[X^2] of the
    true averaged SDE (dt small enough that the macro Euler bias, about -0.5 dt, is below se)."""
    ds = sde_1a.simulate(t_end=100.0, dt=2.5e-3, x0=0.0, n_paths=1000, seed=2, save_every=200)
    x = ds["trajectory"].sel(state="x").where(ds["time"] > 10.0, drop=True).values
    per_path = (x**2).mean(axis=1)
    est, se = per_path.mean(), per_path.std(ddof=1) / np.sqrt(per_path.size)
    exact2 = exact.fast_ou_linear_moments()[2]
    assert abs(est - exact2) < 4 * se, (est, se, exact2)
    # and the interpolated drift itself is close to 1.5 x - x^3 on the grid
    assert np.max(np.abs(sde_1a.F - (1.5 * sde_1a.x - sde_1a.x**3))) < 0.1


def test_macro_solver_input_checks(sde_1a):
    with pytest.raises(ValueError, match="eps"):
        sde_1a.simulate(t_end=1.0, dt=0.1, eps=0.1)
    ds = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, time=20.0, batch=10.0)).fit(
        "lorenz96", np.full((2, 4), 3.0), params={"K": 4, "J": 2}).result_
    with pytest.raises(ValueError, match="one slow variable"):
        ms.AveragedSDE(ds)
    one = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, time=20.0, batch=10.0)).fit(
        "fast_ou_linear", [0.5]).result_
    with pytest.raises(ValueError, match="distinct slow points"):
        ms.AveragedSDE(one)


def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "multiscale", *args], cwd=CWD, env=env,
                          capture_output=True, text=True, timeout=300)


def test_cli_average_round_trip(tmp_path):
    out = tmp_path / "avg.nc"
    r = _cli("average", "--model", "fast_ou_linear", "--points=-2:2:7", "--dt", "0.05", "--time", "50",
             "--batch", "5", "--replicas", "4", "--seed", "3", "--threads", "1", "--out", str(out))
    assert r.returncode == 0, r.stderr
    ds = ms.open_dataset(out)  # read into memory and closed
    ref = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, time=50.0, batch=5.0, replicas=4),
                                seed=3, threads=1).fit("fast_ou_linear", np.linspace(-2, 2, 7)).result_
    for name in ("F", "F_stderr", "A", "tau_int", "converged"):
        np.testing.assert_array_equal(ds[name].values, ref[name].values)
    np.testing.assert_array_equal(ds["x"].values, ref["x"].values)


def test_cli_average_tensor_grid_and_errors(tmp_path):
    out = tmp_path / "l96.nc"
    r = _cli("average", "--model", "lorenz96", "--param", "K=4", "--param", "J=2", "--points", "0:4:2",
             "--dt", "0.0005", "--burn-in", "0.5", "--time", "1", "--batch", "0.5", "--replicas", "2",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert ms.open_dataset(out).sizes["point"] == 16  # 2^4 tensor grid
    bad = _cli("average", "--model", "fast_ou_linear", "--points", "0:1", "--out", str(tmp_path / "b.nc"))
    assert bad.returncode == 2 and "A:B:N" in bad.stderr and "Traceback" not in bad.stderr
    bad = _cli("average", "--model", "double_well", "--points", "0:1:3", "--out", str(tmp_path / "b.nc"))
    assert bad.returncode == 2 and "no explicit fast variables" in bad.stderr
