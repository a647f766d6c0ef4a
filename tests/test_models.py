"""Each catalogue model's step, rebuilt independently in NumPy from the published equations.

The kernel's normals are a pure function of (seed, path, step, component), exposed as
``_core.normals``; with them, two Euler-Maruyama (or exact-OU) steps are recomputed here and
must agree to rounding. This pins the drift, noise, eps scaling and step indexing of every model.
"""
from __future__ import annotations

import numpy as np
import pytest

import multiscale as ms
from multiscale import _core

SEED, N, DT = 11, 37, 1e-3
SQ2 = np.sqrt(2.0)


def _euler_fast(y, g, b, tau, z):
    return y + g * tau + b * np.sqrt(tau) * z


def _ou_fast(y, mu, b, tau, z):
    e = np.exp(-tau)
    return mu + e * (y - mu) + b * np.sqrt(-np.expm1(-2 * tau) / 2) * z


def step_reference(name, p, eps, x, y, z, exact_ou):
    """One step of the published SDE. x: (N, m), y: (N, n), z: (N, m + n)."""
    sdt = np.sqrt(DT)
    zx, zy = z[:, : x.shape[1]], z[:, x.shape[1]:]
    if name in ("fast_ou_linear", "fast_ou_quadratic"):
        coupling = p["c"] * (y if name == "fast_ou_linear" else y**2)
        x1 = x + (x - x**3 + coupling) * DT + p["sigma"] * sdt * zx
        tau = DT / eps
        y1 = _ou_fast(y, x, SQ2, tau, zy) if exact_ou else _euler_fast(y, -(y - x), SQ2, tau, zy)
        return x1, y1
    if name == "tilted_double_well":
        x1 = x + (p["a0"] - x + p["lam"] * y) * DT + SQ2 * sdt * zx
        y1 = _euler_fast(y, -(y**3 - y - p["lam"] * x), SQ2, DT / eps, zy)
        return x1, y1
    if name.startswith("periodic_potential"):
        dV = x if name.endswith("quadratic") else x**3 - x
        drift = -dV + 2 * np.pi * p["A"] / eps * np.sin(2 * np.pi * x / eps)
        return x + drift * DT + np.sqrt(2 * p["sigma"]) * sdt * zx, y
    if name == "fast_ou_noise":
        x1 = x + (-x - x**3 + np.sqrt(1 + x**2) * y / eps) * DT
        tau = DT / eps**2
        y1 = _ou_fast(y, 0.0, SQ2, tau, zy) if exact_ou else _euler_fast(y, -y, SQ2, tau, zy)
        return x1, y1
    if name == "double_well":
        return x + (x - x**3) * DT + p["sigma"] * sdt * zx, y
    if name == "ornstein_uhlenbeck":
        return x - p["theta"] * x * DT + np.sqrt(2 * p["D"]) * sdt * zx, y
    if name == "lorenz96":
        K, J = int(p["K"]), int(p["J"])
        h, b, c, F = p["h"], p["b"], p["c"], p["F"]
        Y = y.reshape(-1, K, J)
        fx = (-np.roll(x, 1, 1) * (np.roll(x, 2, 1) - np.roll(x, -1, 1)) - x + F
              - h * c / b * Y.sum(axis=2))
        fy = (-c * b * np.roll(y, -1, 1) * (np.roll(y, -2, 1) - np.roll(y, 1, 1)) - c * y
              + h * c / b * np.repeat(x, J, axis=1))
        return (x + fx * DT + p["sigma_x"] * sdt * zx, y + fy * DT + p["sigma_y"] * sdt * zy)
    raise AssertionError(name)


CASES = [
    ("fast_ou_linear", {"c": 0.7, "sigma": 0.9}, 0.02, True),
    ("fast_ou_linear", {"c": 0.7, "sigma": 0.9}, 0.02, False),
    ("fast_ou_quadratic", {"c": 0.3, "sigma": 1.1}, 0.01, True),
    ("fast_ou_quadratic", {"c": 0.3, "sigma": 1.1}, 0.01, False),
    ("tilted_double_well", {"a0": 0.2, "lam": 1.3}, 0.05, False),
    ("periodic_potential_quadratic", {"A": 0.8, "sigma": 0.4}, 0.2, False),
    ("periodic_potential_quartic", {"A": 1.0, "sigma": 0.5}, 0.1, False),
    ("fast_ou_noise", {}, 0.1, True),
    ("fast_ou_noise", {}, 0.1, False),
    ("double_well", {"sigma": 0.45}, None, False),
    ("ornstein_uhlenbeck", {"theta": 1.7, "D": 0.6}, None, False),
    ("lorenz96", {"K": 5, "J": 4, "h": 1.0, "b": 10.0, "c": 10.0, "F": 20.0,
                  "sigma_x": 0.3, "sigma_y": 0.2}, None, False),
    ("lorenz96", {"K": 4, "J": 3, "h": 0.5, "b": 5.0, "c": 4.0, "F": 8.0,
                  "sigma_x": 0.0, "sigma_y": 0.0}, None, False),
]


@pytest.mark.parametrize("name,params,eps,exact_ou", CASES)
def test_two_steps_match_published_equations(name, params, eps, exact_ou):
    info = ms.get_model(name)
    p = info.resolve_params(params)
    m, n = info.dims(p)
    rng = np.random.default_rng(3)
    x0 = rng.normal(0.0, 1.5, (N, m)) + (p.get("F", 0.0) if name == "lorenz96" else 0.0)
    y0 = rng.normal(0.0, 1.0, (N, n))
    fast_step = ms.FastStep.EXACT_OU if exact_ou else ms.FastStep.EULER
    if not info.exact_ou:
        fast_step = ms.FastStep.AUTO
    ds = ms.simulate(name, params=params, eps=eps, x0=x0, y0=y0 if n else None, dt=DT,
                     t_end=2 * DT, n_paths=N, seed=SEED, save_every=1, fast_step=fast_step)
    traj = ds["trajectory"].values
    x, y = x0, y0
    for step in range(2):
        z = _core.normals(SEED, 0, N, step, m + n, False)
        noisy = not (name == "lorenz96" and p["sigma_x"] == 0 and p["sigma_y"] == 0)
        x, y = step_reference(name, p, eps if eps is not None else 1.0, x, y, z if noisy else 0 * z,
                              exact_ou and info.exact_ou)
        got = traj[:, step + 1, :]
        np.testing.assert_allclose(got[:, :m], x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[:, m:], y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("exact_ou", [True, False])
def test_float32_step_matches_reference(exact_ou):
    """Float32 kernels draw their own normals (4 per Philox block); with those, the step
    agrees with the float64 reference formula to single-precision rounding."""
    p = {"c": 0.5, "sigma": 1.0}
    x0 = np.float32(0.3) * np.ones((N, 1))
    y0 = np.float32(-0.2) * np.ones((N, 1))
    ds = ms.simulate("fast_ou_linear", eps=0.05, dt=DT, t_end=DT, n_paths=N, seed=SEED, x0=x0,
                     y0=y0, save_every=1, precision=ms.Precision.FLOAT32,
                     fast_step=ms.FastStep.EXACT_OU if exact_ou else ms.FastStep.EULER)
    assert ds["trajectory"].dtype == np.float32
    z = _core.normals(SEED, 0, N, 0, 2, True)
    assert z.dtype == np.float32 and np.all(np.abs(z) < 5.7)  # 23-bit uniforms bound |z|
    x1, y1 = step_reference("fast_ou_linear", p, 0.05, x0, y0, z.astype(float), exact_ou)
    got = ds["trajectory"].values[:, 1, :].astype(float)
    np.testing.assert_allclose(got[:, :1], x1, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got[:, 1:], y1, rtol=2e-6, atol=1e-6)


def test_catalogue_metadata_is_consistent_with_compiled_models():
    for info in ms.list_models():
        p = info.defaults
        m, n = info.dims()
        assert _core.model_dims(info.id, np.array([p[k] for k in info.param_names], float), 0.1) == (m, n)
        slow, fast = info.state_names()
        assert len(slow) == m and len(fast) == n
        x, y = info.default_initial()
        assert x.shape == (m,) and y.shape == (n,)
        assert info.name in info.summary() and info.description
        assert ms.get_model(info.name) is info
        for alias in info.aliases:
            assert ms.get_model(alias) is info
