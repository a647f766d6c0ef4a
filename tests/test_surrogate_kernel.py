"""The learned surrogate as a compiled kernel model: the kernel against the torch reference
(same noise, 1e-12 in float64), invariance to threads and chunks, float32, the 1-D tables, and
the kernel's statistics against the exact answers for the surrogate's own coefficients."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import multiscale as ms
from multiscale import _core
from multiscale.surrogate import EffectiveSDE
from multiscale.surrogate._kernel import TABLE_TOLERANCE
from multiscale.validate._exact1d import stationary_density

FORMS = list(ms.DiffusionForm)


def _random_sde(m: int, form, gradient: bool, members: int = 3, seed: int = 0) -> EffectiveSDE:
    """An untrained surrogate with non-trivial weights and scaling (every code path is exercised)."""
    sde = EffectiveSDE(m, members=members, hidden=(12, 9), diffusion=form, gradient=gradient, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for p in sde.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        # a confining drift for the non-gradient networks: b = -x + net
        sde.set_scaling(x_mean=0.1 * np.arange(m), x_scale=0.8 + 0.1 * np.arange(m), b_mean=0.05,
                        b_scale=0.3, s_scale=0.5 + 0.1 * np.arange(m), x_lo=-2.0, x_hi=2.0)
    return sde


def _rel_close(a: np.ndarray, b: np.ndarray, tol: float) -> float:
    err = float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))
    assert err < tol, err
    return err


@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("gradient", [False, True])
def test_kernel_paths_equal_the_torch_reference(m, form, gradient):
    """Same (seed, path, step) normals: the kernel's paths are the torch paths to rounding, for
    every diffusion form, gradient structure on and off, the ensemble mean, one member and
    member sampling."""
    sde = _random_sde(m, form, gradient)
    kw = dict(t_end=0.2, dt=0.01, n_paths=37, seed=11, save_every=1, x0=np.linspace(-0.5, 0.5, m))
    for member in (None, 1, "sample"):
        ref = sde._simulate_torch(member=member, **kw)
        got = sde.simulate(member=member, tables=False, **kw)
        assert np.all(got.status.values == 0)
        _rel_close(got.trajectory.values, ref.trajectory.values, 1e-12)


def test_kernel_is_bitwise_invariant_to_threads_and_chunks():
    sde = _random_sde(2, ms.DiffusionForm.CHOLESKY, False, members=4)
    kw = dict(t_end=0.5, dt=0.01, seed=3, save_every=10)
    for member in (None, "sample"):
        whole = sde.simulate(n_paths=50, member=member, threads=2, **kw).trajectory.values
        one = sde.simulate(n_paths=50, member=member, threads=1, **kw).trajectory.values
        a = sde.simulate(n_paths=21, member=member, **kw).trajectory.values
        b = sde.simulate(n_paths=29, path_offset=21, member=member, **kw).trajectory.values
        np.testing.assert_array_equal(whole, one)
        np.testing.assert_array_equal(whole, np.concatenate([a, b]))


def test_kernel_continues_a_run_bitwise_with_step_offset():
    sde = _random_sde(1, ms.DiffusionForm.SCALAR, False)
    full = sde.simulate(t_end=0.4, dt=0.01, n_paths=20, seed=9, member="sample")
    half = sde.simulate(t_end=0.2, dt=0.01, n_paths=20, seed=9, member="sample")
    rest = sde.simulate(t_end=0.2, dt=0.01, n_paths=20, seed=9, member="sample", step_offset=20,
                        x0=half.final_state.values)
    np.testing.assert_array_equal(full.final_state.values, rest.final_state.values)


def test_float32_kernel_within_its_tolerance():
    """float32 arithmetic against the float64 torch reference driven by the same float32
    normals: over 20 steps the paths agree to 1e-5 of the state scale."""
    sde = _random_sde(2, ms.DiffusionForm.DIAGONAL, False)
    kw = dict(t_end=0.2, dt=0.01, n_paths=64, seed=5, member="sample")
    ref = sde._simulate_torch(float32_normals=True, **kw).final_state.values
    got = sde.simulate(precision=ms.Precision.FLOAT32, tables=False, **kw).final_state.values
    assert got.dtype == np.float32
    _rel_close(got.astype(float), ref, 1e-5)


@pytest.mark.parametrize("member", [None, 0, "sample"])
def test_tables_agree_with_the_networks_within_their_stated_error(member):
    sde = _random_sde(1, ms.DiffusionForm.CHOLESKY, True)
    info = sde.table_info(member)
    assert info["max_error"] < TABLE_TOLERANCE
    assert info["lo"] < float(sde.x_lo[0]) and info["hi"] > float(sde.x_hi[0])
    # One step from states across the table and beyond it (where the networks take over):
    # the kernel's drift and noise with tables against the networks.
    x0 = np.linspace(info["lo"] - 1.0, info["hi"] + 1.0, 4001)
    kw = dict(t_end=0.01, dt=0.01, n_paths=x0.size, x0=x0[:, None], seed=2, member=member)
    with_t = sde.simulate(tables=True, **kw).final_state.values[:, 0] - x0
    without = sde.simulate(tables=False, **kw).final_state.values[:, 0] - x0
    scale = np.abs(without).max()
    assert np.abs(with_t - without).max() < 4 * TABLE_TOLERANCE * scale


def test_step_size_substeps_reproduce_the_finer_brownian_path():
    """noise_substeps=2 at dt draws the summed increments of the dt/2 run: a linear SDE (OU
    drift and constant noise) then gives the same Brownian path, and the difference of the two
    runs is the O(dt) discretisation error, not noise."""
    sde = _random_sde(1, ms.DiffusionForm.SCALAR, False)
    kw = dict(t_end=1.0, n_paths=2000, seed=4, member=0, x0=0.2)
    coarse = sde.simulate(dt=0.02, noise_substeps=2, **kw).final_state.values[:, 0]
    fine = sde.simulate(dt=0.01, **kw).final_state.values[:, 0]
    other = sde.simulate(dt=0.01, **{**kw, "seed": 5}).final_state.values[:, 0]
    coupled = np.std(coarse - fine)
    independent = np.std(other - fine)
    assert coupled < 0.1 * independent


def test_kernel_invariant_density_matches_the_surrogates_exact_density():
    """A one-variable surrogate simulated in the kernel (tables) samples the stationary density
    of its own drift and diffusion, computed by quadrature: histogram counts within 4 standard
    errors (multinomial, paths independent) in every bin, and the mean."""
    sde = _random_sde(1, ms.DiffusionForm.CHOLESKY, True, members=2, seed=3)
    b = lambda v: sde.drift(v[:, None])[:, 0]  # noqa: E731
    A = lambda v: sde.diffusion(v[:, None])[:, 0, 0]  # noqa: E731
    lo, hi = -4.0, 4.0
    xq, rho = stationary_density(b, A, lo, hi, n=4001)
    n = 20000
    ds = sde.simulate(t_end=40.0, dt=0.002, n_paths=n, seed=8, x0=0.0)
    x = ds.final_state.values[:, 0]
    edges = np.linspace(-2.5, 2.5, 21)
    counts, _ = np.histogram(x, edges)
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (rho[1:] + rho[:-1]) * np.diff(xq))])
    p = np.diff(np.interp(edges, xq, cdf))
    # Euler at dt = 0.002 biases the density by O(dt); 4 standard errors plus 0.5% of the mass.
    se = np.sqrt(n * p * (1 - p))
    assert np.all(np.abs(counts - n * p) < 4 * se + 0.005 * n * p), (counts, n * p)


def test_kernel_bad_input_is_named():
    sde = _random_sde(1, ms.DiffusionForm.SCALAR, False)
    with pytest.raises(ValueError, match="precision"):
        sde.simulate(t_end=0.1, dt=0.01, precision="float16")
    with pytest.raises(ValueError, match="noise_substeps"):
        sde.simulate(t_end=0.1, dt=0.01, noise_substeps=0)
    with pytest.raises(ValueError, match="member"):
        sde.simulate(t_end=0.1, dt=0.01, member=7)
    with pytest.raises(ValueError, match="surrogate: 3 parameters"):
        _core.simulate_surrogate_float64(
            dim=1, members=1, form=2, gradient=False, member=0, hidden=np.array([4], np.int32),
            params=np.zeros(3), tables=np.zeros(0), n_grid=0, t_lo=0.0, t_h=0.0, dt=0.1, n_steps=1, seed=0,
            path_offset=0, step_offset=0, x_init=np.zeros((1, 1)), save_steps=np.zeros(0, np.int64), threads=1,
            obs_vars=np.zeros(0, np.int32), obs_shift=np.zeros(0), window_edges=np.zeros(0, np.int64), bins=0,
            lo=np.zeros(0), hi=np.zeros(0), noise_substeps=1, device=-1)
    assert math.isfinite(sde.table_info()["max_error"])


@pytest.mark.parametrize("single", [False, True])
def test_elementary_functions_within_their_stated_error(single):
    """The kernels' polynomial tanh, softplus and sigmoid (elementary.h) against NumPy and torch
    over the whole range the networks use, within the bounds stated in the header."""
    x = np.concatenate([np.linspace(-40.0, 40.0, 400001), np.geomspace(1e-300, 30.0, 4000),
                        -np.geomspace(1e-300, 30.0, 4000)])
    if single:
        x = x.astype(np.float32).astype(float)
    bound = {False: {"tanh": 7e-16, "softplus": 1e-15, "sigmoid": 7e-16},
             True: {"tanh": 4e-7, "softplus": 4e-7, "sigmoid": 4e-7}}[single]
    xt = torch.as_tensor(x)
    refs = {"tanh": np.tanh(x), "softplus": torch.nn.functional.softplus(xt).numpy(),
            "sigmoid": torch.sigmoid(xt).numpy()}
    for name, ref in refs.items():
        got = _core.elementary(name, x, single)
        tiny = np.abs(ref) < (1e-30 if single else 1e-300)
        rel = np.abs(got - ref)[~tiny] / np.abs(ref)[~tiny]
        assert rel.max() < bound[name], (name, rel.max(), x[~tiny][np.argmax(rel)])
    with pytest.raises(ValueError, match="unknown function 'cosh'"):
        _core.elementary("cosh", x[:3], single)
