"""The compiled kernel of the hybrid ring surrogate (``LocalEffectiveSDE.simulate``,
``csrc/include/multiscale/models/local_surrogate.h``) against the torch reference
``simulate_torch``: the same Philox normals, so paths agree to rounding; threads, chunking and
the set of paths do not change the numbers; member modes; statuses and bad inputs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import multiscale as ms
from multiscale.surrogate._local import LocalEffectiveSDE


def _l96_resolved(K: int, F: float = 8.0) -> ms.Model:
    return ms.Model("l96r_test", slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"}, slow_noise={"X": "0"},
                    sizes={"X": "K"}, params={"K": K, "F": F}, scaling="none")


def _sde(K: int = 6, *, members: int = 3, resolved: ms.Model | None = None, seed: int = 1) -> LocalEffectiveSDE:
    sde = LocalEffectiveSDE(K, stencil=1, members=members, hidden=(8, 8), resolved=resolved, seed=seed)
    sde.set_scaling(x_mean=1.0, x_scale=2.0, u_mean=0.3, u_scale=1.5, s_scale=0.7)
    with torch.no_grad():  # members that differ visibly (random init: the last layer is 0.1x)
        for net in (sde.drift_net, sde.diff_net):
            net.weights[-1].mul_(5.0)
    return sde


def _x0(P: int, K: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(1.0, 2.0, (P, K))


@pytest.mark.parametrize("member", ["sample", None, 2])
def test_kernel_matches_torch_without_resolved(member):
    sde = _sde()
    x0 = _x0(5, 6)
    ref = sde.simulate_torch(t_end=0.1, dt=0.01, x0=x0, seed=7, member=member, save_every=2)
    got = sde.simulate(t_end=0.1, dt=0.01, x0=x0, seed=7, member=member, save_every=2, threads=1)
    assert got.shape == ref.shape == (5, 6, 6)
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    assert np.abs(got[:, -1] - x0).min() > 1e-3  # it moved


def test_kernel_matches_torch_with_l96_resolved():
    K = 6
    sde = _sde(K, resolved=_l96_resolved(K))
    x0 = _x0(4, K, 1)
    for member in ("sample", None):
        ref = sde.simulate_torch(t_end=0.2, dt=0.005, x0=x0, seed=3, member=member)
        got = sde.simulate(t_end=0.2, dt=0.005, x0=x0, seed=3, member=member, threads=2)
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    # R is really in there: without it the paths differ
    bare = _sde(K).simulate(t_end=0.2, dt=0.005, x0=x0, seed=3)
    assert np.abs(bare[:, -1] - got[:, -1]).max() > 0.1


def test_threads_chunks_and_path_sets_do_not_change_numbers():
    sde = _sde(members=3, resolved=_l96_resolved(6))
    x0 = _x0(37, 6, 2)  # more paths than a block's lanes, three member groups
    a = sde.simulate(t_end=0.5, dt=0.01, x0=x0, seed=11, threads=1)
    b = sde.simulate(t_end=0.5, dt=0.01, x0=x0, seed=11, threads=2)
    np.testing.assert_array_equal(a, b)
    c = sde.simulate(t_end=0.5, dt=0.01, x0=x0, seed=11, threads=2, save_every=10)
    np.testing.assert_array_equal(c, a[:, ::10])
    d = sde.simulate(t_end=0.5, dt=0.01, x0=x0[:5], seed=11, threads=2)  # other blocks, same path ids
    np.testing.assert_array_equal(d, a[:5])
    e = sde.simulate(t_end=0.5, dt=0.01, x0=x0, seed=12, threads=2)
    assert np.abs(e[:, -1] - a[:, -1]).max() > 1e-3


def test_member_modes():
    sde = _sde(members=3)
    x0 = _x0(6, 6, 3)
    sample = sde.simulate(t_end=0.2, dt=0.01, x0=x0, seed=5, member="sample")
    for k in range(3):
        one = sde.simulate(t_end=0.2, dt=0.01, x0=x0, seed=5, member=k)
        np.testing.assert_array_equal(one[k::3], sample[k::3])  # path p follows member p mod 3
    m0, m1 = (sde.simulate(t_end=0.2, dt=0.01, x0=x0, seed=5, member=k) for k in (0, 1))
    assert np.abs(m0[:, -1] - m1[:, -1]).max() > 1e-3
    mean = sde.simulate(t_end=0.2, dt=0.01, x0=x0, seed=5, member=None)
    assert np.abs(mean[:, -1] - m0[:, -1]).max() > 1e-4


def test_float32_kernel_is_close_to_float64():
    # float32 normals are other draws of the same keys: compare with (nearly) no noise
    x0 = _x0(40, 6, 4)
    sde_det = _sde(resolved=_l96_resolved(6))
    sde_det.set_scaling(1.0, 2.0, 0.3, 1.5, 1e-12)
    a = sde_det.simulate(t_end=0.1, dt=0.005, x0=x0, seed=2, member=None)
    b = sde_det.simulate(t_end=0.1, dt=0.005, x0=x0, seed=2, member=None, precision=ms.Precision.FLOAT32)
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)


def test_blow_up_raises_naming_the_path():
    growth = ms.Model("ring_growth_test", slow={"X[k]": "X[k]*X[k]"}, slow_noise={"X": "0"}, sizes={"X": "K"},
                      params={"K": 5}, scaling="none")
    sde = _sde(5, resolved=growth)
    x0 = np.full((3, 5), 0.5)
    x0[1] = 3.0  # path 1 blows up first
    with pytest.raises(ms.SimulationError, match=r"non-finite; the first, path 1, at step \d+ \(t = \d+\)") as info:
        sde.simulate(t_end=40.0, dt=1.0, x0=x0, seed=0)
    assert info.value.status[1] == 1 and info.value.trajectory.shape == (3, 41, 5)
    assert np.isnan(info.value.trajectory[1, -1]).all()


@pytest.mark.parametrize("kwargs, match", [
    (dict(x0=np.zeros((2, 5))), r"x0 has shape \(2, 5\); expected \(n_paths, 6\)"),
    (dict(x0=np.array([[0, 0, np.nan, 0, 0, 0]])), r"x0\[0, 2\] = nan"),
    (dict(dt=0.0), "dt=0.0"),
    (dict(dt=-0.1), "dt=-0.1"),
    (dict(t_end=0.105), r"t_end=0.105 is not a multiple of dt=0.01"),
    (dict(member=3), r"member=3 must be None, 'sample' or an integer in \[0, 3\)"),
    (dict(member="mean"), "member='mean'"),
    (dict(member=True), "member=True"),
    (dict(save_every=0), "save_every"),
    (dict(threads=0), "threads"),
    (dict(precision="float16"), "precision='float16'"),
])
def test_bad_inputs_raise_naming_the_value(kwargs, match):
    sde = _sde(members=3)
    args = dict(t_end=0.1, dt=0.01, x0=np.zeros((2, 6)))
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        sde.simulate(**args)
