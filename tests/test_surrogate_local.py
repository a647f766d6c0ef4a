"""Hybrid local closures on a ring: exact shift equivariance, the second-order moments of the
local form against autograd, a ring with an exactly known averaged closure learned from both
data pathways, and the practitioners' baselines on Lorenz-96."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale as ms  # noqa: E402
from multiscale.surrogate._local import (LocalClosureEstimator, LocalEffectiveSDE, RingClosure,  # noqa: E402
                                         local_moments, resolved_jets)


def _l96_resolved(K: int, F: float = 8.0) -> ms.Model:
    return ms.Model("l96_resolved", slow={"X[k]": "X[k-1]*(X[k+1] - X[k-2]) - X[k] + F"}, slow_noise={"X": "0"},
                    sizes={"X": "K"}, params={"K": K, "F": F}, scaling="none")


def _random_local(K: int = 6, stencil: int = 2, members: int = 3) -> LocalEffectiveSDE:
    net = LocalEffectiveSDE(K, stencil=stencil, members=members, hidden=(7, 5), resolved=_l96_resolved(K), seed=1)
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    net.set_scaling(0.5, 1.7, 0.2, 0.8, 0.6)
    return net


def test_shifting_the_ring_shifts_drift_and_diffusion_exactly():
    net = _random_local(K=8)
    x = np.random.default_rng(0).normal(size=(5, 8)) * 3
    for shift in (1, 3, -2):
        xs = np.roll(x, shift, 1)
        assert np.array_equal(np.roll(net.drift(x), shift, 1), net.drift(xs))
        A, As = net.diffusion(x), net.diffusion(xs)
        assert np.array_equal(np.roll(np.diagonal(A, axis1=1, axis2=2), shift, 1), np.diagonal(As, axis1=1, axis2=2))


def test_second_order_moments_of_the_local_form_match_autograd():
    """Kessler's mean and covariance from the local networks' stencil jets and the resolved
    part's forward-mode derivatives, against full Jacobians and Hessians by autograd."""
    K, D = 6, 0.05
    net = _random_local(K)
    x = torch.randn(4, K, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    mean, cov = local_moments(net, x, torch.full((4,), D, dtype=torch.float64), 2, resolved_jets(net, x))
    for e in range(net.members):
        def b(y, e=e):
            return net.members_drift(y[None])[e, 0]

        def a(y, e=e):
            return torch.diagonal(net.members_diffusion(y[None])[e, 0])

        for n in range(4):
            y = x[n]
            J, Hb = torch.func.jacrev(b)(y), torch.func.hessian(b)(y)
            Ja, Ha = torch.func.jacrev(a)(y), torch.func.hessian(a)(y)
            A = torch.diag(a(y))
            Lb = J @ b(y) + 0.5 * torch.einsum("jj,kjj->k", A, Hb)
            LA = J @ A + A @ J.T + torch.diag(Ja @ b(y)) + 0.5 * torch.diag(torch.einsum("jj,kjj->k", A, Ha))
            assert torch.allclose(mean[e, n], b(y) * D + Lb * D**2 / 2, rtol=0, atol=1e-14)
            assert torch.allclose(cov[e, n], A * D + LA * D**2 / 2, rtol=0, atol=1e-14)


def test_config_round_trip_and_member_subsets():
    net = _random_local()
    back = LocalEffectiveSDE.from_config(net.config(), net.state_arrays())
    x = np.random.default_rng(1).normal(size=(3, 6))
    assert np.array_equal(back.members_drift(x), net.members_drift(x))
    sub = net.subset(slice(1, 3))
    assert sub.members == 2 and np.array_equal(sub.members_drift(x), net.members_drift(x)[1:3])


_K = 8


@pytest.fixture(scope="module")
def ou_ring():
    """Slow ring ``dX_k = (X_{k-1} - 2 X_k + X_{k+1} - X_k^3 + c Y_k) dt + sigma dW`` with fast OU
    ``Y_k`` relaxing to ``a sin X_k + b X_{k+1}``: the averaged closure is
    ``U_k = c (a sin X_k + b X_{k+1})`` and ``A = sigma^2`` (plus ``2 c^2 eps`` at finite eps in
    the increments). Returns the full model, the resolved part, trajectories and test points."""
    full = ms.Model("ring_ou", slow={"X[k]": "X[k-1] - 2*X[k] + X[k+1] - X[k]^3 + c*Y[k]"},
                    fast={"Y[k]": "-(Y[k] - a*sin(X[k]) - b*X[k+1])"}, slow_noise={"X": "sigma"},
                    fast_noise={"Y": "sqrt(2)"}, sizes={"X": "K", "Y": "K"},
                    params={"K": _K, "a": 1.0, "b": 0.5, "c": 1.0, "sigma": 1.0}, scaling="averaging",
                    default_eps=0.01)
    resolved = ms.Model("ring_resolved", slow={"X[k]": "X[k-1] - 2*X[k] + X[k+1] - X[k]^3"},
                        slow_noise={"X": "0"}, sizes={"X": "K"}, params={"K": _K}, scaling="none")
    ds = ms.simulate(full, eps=0.01, dt=1e-3, t_end=100.0, n_paths=16, seed=1, save_every=20)
    x = ds.trajectory.values[:, ::97, :_K].reshape(-1, _K)[:800]
    return full, resolved, ds, x


def _recovered(sde, x: np.ndarray, A_exact: float, A_tol: float) -> None:
    """The exact closure inside the ensemble's stated error bar at >= 95% of the data's points, a
    small rms error, and the diffusion. The stated error bar is the member spread
    (``drift_spread``, a 1-sigma figure); a band of 4 spreads would cover all but 6e-5 of the
    points if the spread were exact, and deep ensembles are known to under-cover, so 95% is asked
    (over 800 points: 2.7 and 1.1 spreads cover 89% and 93% in the two pathways). ``A_tol`` is
    5% of A: the increments' variance is estimated from ~1e6 site samples, and the two-lag fit
    keeps an O(lag) bias of that order."""
    U, spread = sde.members_unresolved(x).mean(0), sde.drift_spread(x)
    exact = np.sin(x) + 0.5 * np.roll(x, -1, 1)
    err = np.abs(U - exact)
    assert np.mean(err <= 4 * spread) >= 0.95, np.mean(err <= 4 * spread)
    assert np.sqrt(np.mean(err**2)) < 0.1 * np.sqrt(np.mean(exact**2))
    A = np.diagonal(sde.diffusion(x), axis1=1, axis2=2)
    assert abs(A.mean() - A_exact) < A_tol, A.mean()


@pytest.mark.slow
def test_a_ring_with_an_exact_averaged_closure_is_learned_from_trajectories(ou_ring):
    """Pathway (a): coarse trajectories with the multiscale likelihood (the lag rule's lag)."""
    _, resolved, ds, x = ou_ring
    est = LocalClosureEstimator(ms.SurrogateOptions(members=4, hidden=(32, 32), epochs=300),
                                RingClosure(stencil=1, resolved=resolved)).fit(ds)
    assert est.summary_["method"] == "MULTISCALE" and est.summary_["lag_rule"]["reliable"]
    _recovered(est.fetch_model(), x, 1.02, 0.05)


@pytest.mark.slow
def test_a_ring_with_an_exact_averaged_closure_is_learned_from_scattered_estimates(ou_ring):
    """Pathway (b): frozen-X estimates at slow states drawn from the full system's trajectories
    (no grid), learned with their standard errors."""
    full, resolved, ds, x = ou_ring
    X = ds.trajectory.values[:, :, :_K].reshape(-1, _K)
    pts = X[np.random.default_rng(3).choice(X.shape[0], 200, replace=False)]
    avg = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, burn_in=5.0, time=200.0, replicas=4, batch=10.0),
                                seed=1).fit(full, pts, eps=0.01).result_
    assert avg["converged"].values.all()
    est = LocalClosureEstimator(ms.SurrogateOptions(members=4, hidden=(32, 32), epochs=1000),
                                RingClosure(stencil=1, resolved=resolved)).fit(avg)
    assert est.summary_["pathway"] == "estimates" and est.summary_["n_points"] == 200
    _recovered(est.fetch_model(), x, 1.0, 0.05)


@pytest.mark.slow
def test_the_cubic_and_ar1_baselines_reproduce_the_published_lorenz96_closure():
    """Arnold, Moroz & Palmer (2013), c = 10, F = 20: U = 0.341 + 1.30 X - 0.0136 X^2 - 0.00235 X^3
    (U subtracted); Wilks (2005) AR(1) residual: phi = 0.986 per 0.005, sigma_e = 1.99."""
    from multiscale.surrogate._baselines import PolynomialClosure

    from multiscale.validate import independent_starts

    K = 8
    info = ms.get_model("lorenz96")
    x0, y0 = independent_starts(info, info.resolve_params({}), 8, seed=1)  # no noise: distinct starts
    ds = ms.simulate(info, dt=2e-4, t_end=105.0, n_paths=8, seed=1, x0=x0, y0=y0, save_every=25, save_fast=False)
    X = ds.trajectory.values[:, 1000:, :K]  # after 5 time units of spin-up
    assert not np.array_equal(X[0], X[1])
    resolved = ms.Model("l96r", slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"}, slow_noise={"X": "0"},
                        sizes={"X": "K"}, params={"K": K, "F": 20.0}, scaling="none")
    pc = PolynomialClosure.fit(X, 0.005, resolved)
    U = -pc.coefficients
    x = np.linspace(-5, 15, 41)
    published = 0.341 + 1.30 * x - 0.0136 * x**2 - 0.00235 * x**3
    assert np.max(np.abs(np.polynomial.polynomial.polyval(x, U) - published)) < 0.6  # |U| up to ~12 here
    assert abs(pc.phi - 0.986) < 0.005 and abs(pc.sigma_e - 1.99) < 0.1
    assert abs(X.mean() - 3.76) < 0.1 and abs(X.std() - 5.07) < 0.1


def test_local_surrogates_save_and_load_pickle_free(tmp_path):
    from multiscale.surrogate import load_surrogate, save_surrogate

    net = _random_local()
    path = save_surrogate(net, tmp_path / "local.h5")
    back = load_surrogate(path)
    assert isinstance(back, LocalEffectiveSDE)
    x = np.random.default_rng(4).normal(size=(3, 6))
    assert np.array_equal(back.members_drift(x), net.members_drift(x))
    assert np.array_equal(back.members_diffusion(x), net.members_diffusion(x))


def test_a_crafted_local_file_is_refused_before_allocation(tmp_path):
    """A consistently checksummed ring file whose description asks for a huge network, or whose
    resolved model is not a model, is refused with SurrogateFormatError."""
    import json

    import h5py

    from multiscale.surrogate import SurrogateFormatError, load_surrogate, save_surrogate
    from multiscale.surrogate._io import _checksum

    path = save_surrogate(_random_local(), tmp_path / "local.h5")
    for change, match in (({"members": 10**6, "hidden": [10**6, 10**6]}, "architecture"),
                          ({"stencil": 99}, "stencil"), ({"resolved": {"slow": 3}}, "bad.h5: model")):
        with h5py.File(path, "r") as f:
            cfg = json.loads(f.attrs["config_json"])
        cfg.update(change)
        bad = tmp_path / "bad.h5"
        bad.write_bytes(path.read_bytes())
        with h5py.File(bad, "r+") as f:
            f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
            f.attrs["sha256"] = _checksum(f.attrs["config_json"], {k: f["arrays"][k][()] for k in f["arrays"]})
        with pytest.raises(SurrogateFormatError, match=match):
            load_surrogate(bad)
