"""The learning layer against exact answers (reference problems 1a, 3a, 4 of docs/reference_problems.md) and its contracts."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale as ms  # noqa: E402
from multiscale import exact  # noqa: E402
from multiscale.cli import main as cli_main  # noqa: E402
from multiscale.surrogate import (DiffusionForm, EffectiveSDE, EffectiveSDEEstimator, LagWarning,  # noqa: E402
                                  SurrogateOptions, TrajectoryMethod, choose_lag, lag_ladder,
                                  load_surrogate, save_surrogate)
from multiscale.surrogate._model import member_moments  # noqa: E402
from multiscale._streams import Stream  # noqa: E402

X_TEST = np.linspace(-2.0, 2.0, 201)


# ----------------------------------------------------------------------------------------------
# Problem 1a from averaged estimates
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def avg1a():
    opts = ms.AveragingOptions(dt=0.05, burn_in=10.0, time=200.0, batch=10.0)
    return ms.AveragingEstimator(opts, seed=11).fit("fast_ou_linear", np.linspace(-2.5, 2.5, 41)).result_


@pytest.fixture(scope="module")
def sde1a(avg1a):
    est = EffectiveSDEEstimator(SurrogateOptions(members=10, seed=3))
    assert est.fit(avg1a) is est
    return est


def test_problem1a_drift_diffusion_and_coverage(sde1a, avg1a):
    sde = sde1a.fetch_model()
    exact_F = exact.fast_ou_linear_drift(X_TEST)
    b, spread = sde.drift(X_TEST)[:, 0], sde.drift_spread(X_TEST)[:, 0]
    A = sde.diffusion(X_TEST)[:, 0, 0]
    assert np.max(np.abs(b - exact_F)) < 0.03, np.max(np.abs(b - exact_F))
    assert np.max(np.abs(A - 1.0)) < 0.03
    inside = np.mean(np.abs(b - exact_F) <= 2 * spread)
    assert inside >= 0.9, f"exact drift inside the 2-spread band at {inside:.0%} of points"
    # The spread is of the size of the estimates' standard errors, not arbitrarily wide.
    assert np.median(spread) < 2 * float(avg1a["F_stderr"].max())


def test_problem1a_spread_grows_outside_the_data(sde1a):
    sde = sde1a.fetch_model()
    inside = np.median(sde.drift_spread(X_TEST)[:, 0])
    outside = sde.drift_spread(np.array([-4.0, -3.5, 3.5, 4.0]))[:, 0]
    assert np.all(outside > 5 * inside), (outside, inside)
    assert np.all(sde.diffusion_spread(np.array([-5.0, 5.0]))[:, 0, 0]
                  > 5 * np.median(sde.diffusion_spread(X_TEST)[:, 0, 0]))


def test_problem1a_surrogate_invariant_second_moment(sde1a):
    """Each path follows one member; the per-member means give a t statistic that carries both
    the Monte Carlo error and the model uncertainty."""
    sde = sde1a.fetch_model()
    ds = sde.simulate(t_end=40.0, dt=0.01, x0=0.0, n_paths=1000, seed=5, save_every=50, member="sample")
    x = ds["trajectory"].sel(state="x").where(ds["time"] > 5.0, drop=True).values
    per = np.array([(x[k::sde.members] ** 2).mean() for k in range(sde.members)])
    est, se = per.mean(), per.std(ddof=1) / math.sqrt(sde.members)
    ref = exact.fast_ou_linear_moments()[2]
    assert abs(est - ref) < 4 * se + 2 * 0.01 * 1.0, (est, se, ref)  # + Euler bias O(dt)


def test_estimates_history_and_provenance(sde1a):
    s = sde1a.summary_
    assert s["pathway"] == "estimates" and s["n_points"] == 41
    assert len(sde1a.history_["val"]) > 0
    p = sde1a.fetch_model().provenance
    assert p["source"]["model"] == "fast_ou_linear" and p["options"]["members"] == 10


# ----------------------------------------------------------------------------------------------
# Problem 4 (homogenization with fast OU noise) from averaged estimates
# ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def avg4():
    opts = ms.AveragingOptions(dt=0.05, burn_in=10.0, time=4000.0, replicas=64, batch=10.0)
    return ms.AveragingEstimator(opts, seed=4).fit("fast_ou_noise", np.linspace(-2.5, 2.5, 26)).result_


@pytest.mark.slow
def test_problem4_ito_corrected_drift_and_diffusion(avg4):
    sde = EffectiveSDEEstimator(SurrogateOptions(members=8, seed=0)).fit(avg4).fetch_model()
    F, A = exact.fast_ou_noise_drift(X_TEST), exact.fast_ou_noise_diffusion(X_TEST)
    b, Ah = sde.drift(X_TEST)[:, 0], sde.diffusion(X_TEST)[:, 0, 0]
    assert np.max(np.abs(b - F)) < 0.05 * np.max(np.abs(F))
    assert np.max(np.abs(Ah / A - 1)) < 0.05
    # Distinguishable from the uncorrected (wrong) limit -x - x^3 away from 0.
    wrong = exact.fast_ou_noise_drift(X_TEST, ito_correction=False)
    far = np.abs(X_TEST) > 1
    assert np.all(np.abs(b - wrong)[far] > 3 * np.abs(b - F)[far])


@pytest.mark.slow
def test_problem4_gradient_structure_potential(avg4):
    """The invariant density of problem 4's limit is (1+x^2)^(-1/2) exp(-x^2/2), so the learned
    potential must be x^2/2 + log(1+x^2)/2 up to a constant."""
    opts = SurrogateOptions(members=6, seed=1, gradient=True, diffusion=DiffusionForm.SCALAR)
    sde = EffectiveSDEEstimator(opts).fit(avg4).fetch_model()
    U = sde.potential(X_TEST)
    ref = X_TEST**2 / 2 + 0.5 * np.log1p(X_TEST**2)
    d = U - ref
    assert np.ptp(d) < 0.15, np.ptp(d)
    F = exact.fast_ou_noise_drift(X_TEST)
    assert np.max(np.abs(sde.drift(X_TEST)[:, 0] - F)) < 0.05 * np.max(np.abs(F))


# ----------------------------------------------------------------------------------------------
# Problem 3a from coarse trajectories of the full multiscale system
# ----------------------------------------------------------------------------------------------

EPS3 = 0.1


@pytest.fixture(scope="module")
def traj3a():
    """64 paths over T = 40 from the stationary homogenized law, dt = 2e-3 eps^2, saved every 0.01."""
    dt = 2e-3 * EPS3**2
    x0 = np.random.default_rng(0).normal(0.0, math.sqrt(0.5), 64)
    return ms.simulate("periodic_potential_quadratic", eps=EPS3, dt=dt, t_end=40.0, n_paths=64, seed=3,
                       x0=x0, save_every=int(round(0.01 / dt)))


def test_problem3a_multiscale_estimator_recovers_sigma_K(traj3a):
    est = EffectiveSDEEstimator(SurrogateOptions(members=5, seed=1, hidden=(16, 16), epochs=200,
                                                 batch_size=4096))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LagWarning)  # the default lag must not warn
        est.fit(traj3a)
    sde = est.fetch_model()
    # Sampled at eps^2, the differenced rate is settled from the shortest lag: the two-lag
    # likelihood's fast-scale covariance C takes the rest of the fast fluctuation.
    assert est.lag_ == pytest.approx(EPS3**2)
    assert est.summary_["lag_rule"]["reliable"] and not est.summary_["lag_rule"]["fast_scale_resolved"]
    xs = np.linspace(-1.0, 1.0, 21)
    D = sde.diffusion(xs)[:, 0, 0] / 2
    ref = 0.5 * exact.periodic_homogenized_K(A=1.0, sigma=0.5)
    assert abs(ref - 0.09621843924584) < 1e-12
    assert np.max(np.abs(D / ref - 1)) < 0.05, (D.mean(), ref)
    # The fitted fast-scale covariance C is positive and far below the lag's variance.
    C = est.summary_["fast_scale_covariance"][0][0]
    assert 0 < C < 0.2 * 2 * ref * est.lag_


@pytest.fixture(scope="module")
def traj3a_resolved():
    """Problem 3a sampled every 1e-4 = eps^2 / 100 (the fast scale resolved), 32 paths over T = 4."""
    dt = 2e-3 * EPS3**2
    x0 = np.random.default_rng(1).normal(0.0, math.sqrt(0.5), 32)
    return ms.simulate("periodic_potential_quadratic", eps=EPS3, dt=dt, t_end=4.0, n_paths=32,
                       seed=4, x0=x0, save_every=5)


def test_problem3a_fast_resolved_data_the_rule_steps_past_the_knee(traj3a_resolved):
    """Data that resolve the fast scale: the differenced rate falls from the unhomogenized sigma
    to sigma K across the knee; the rule takes the first settled lag after it (a few eps^2 / 10),
    and the fit there gives the homogenized diffusion."""
    ds = traj3a_resolved
    arr = ds.trajectory.values
    lad = lag_ladder(arr, 1e-4)
    assert lad["d"][0, 0] > 2.5 * lad["d"][-1, 0]  # the fast scale is on the ladder
    k = choose_lag(lad)
    assert 4 <= k <= 64, (k, lad["d"].ravel())
    ref = 0.5 * exact.periodic_homogenized_K(A=1.0, sigma=0.5)
    j = int(np.searchsorted(lad["k"], k))
    assert abs(lad["d"][j, 0] / (2 * ref) - 1) < 0.05 + 3 * lad["d_se"][j, 0] / (2 * ref)
    est = EffectiveSDEEstimator(SurrogateOptions(members=3, seed=1, hidden=(16, 16), epochs=200,
                                                 euler_warmup=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LagWarning)  # the default lag must not warn
        est.fit(ds)
    rule = est.summary_["lag_rule"]
    assert rule["fast_scale_resolved"] and rule["knee_lag"] < est.lag_ == pytest.approx(k * 1e-4)
    D = est.fetch_model().diffusion(np.linspace(-0.5, 0.5, 5))[:, 0, 0] / 2
    assert np.max(np.abs(D / ref - 1)) < 0.1, D


def test_problem3a_naive_finest_lag_reads_the_unhomogenized_noise(traj3a_resolved):
    """At the finest lag (below the knee) the Euler likelihood reads the unhomogenized noise,
    well above sigma K, and a LagWarning names the knee."""
    est = EffectiveSDEEstimator(SurrogateOptions(members=3, seed=0, hidden=(8,), epochs=150,
                                                 method=TrajectoryMethod.EULER, bootstrap=False))
    with pytest.warns(LagWarning, match="fast-scale knee"):
        est.fit(traj3a_resolved, lag=1e-4)
    D = est.fetch_model().diffusion(np.linspace(-0.5, 0.5, 5))[:, 0, 0] / 2
    ref = 0.5 * exact.periodic_homogenized_K(A=1.0, sigma=0.5)
    assert np.all(D > 1.8 * ref), D  # sigma K = 0.096; the finest lag's rate is far above it


def test_lag_ladder_and_rule_on_an_exact_ou_sample():
    """Exactly sampled OU (no fast scale): the de-trended variance is the exact transition
    variance; the rule finds no knee, picks the finest lag, and nothing warns."""
    rng = np.random.default_rng(7)
    K, Dc, h, P, T = 0.5, 0.3, 0.05, 40, 4000
    a, s = math.exp(-K * h), math.sqrt(Dc / K * (1 - math.exp(-2 * K * h)))
    x = np.empty((P, T))
    x[:, 0] = rng.normal(0, math.sqrt(Dc / K), P)
    for t in range(1, T):
        x[:, t] = a * x[:, t - 1] + s * rng.standard_normal(P)
    lad = lag_ladder(x[..., None], h)
    assert abs(lad["tau"] - 1 / K) < 0.25 / K
    # Locally de-trended, the increments' variance is the OU transition variance at each lag.
    lags = lad["k"] * h
    exact_var = Dc / K * -np.expm1(-2 * K * lags)
    assert np.all(np.abs(lad["v"][:, 0] * lags / exact_var - 1) < 0.03), lad["v"][:, 0]
    assert choose_lag(lad) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", LagWarning)
        est = EffectiveSDEEstimator(SurrogateOptions(members=3, hidden=(8,), epochs=100,
                                                     method=TrajectoryMethod.EULER)).fit(x[..., None], dt=h, variables=["x"])
    assert est.lag_ == pytest.approx(h)
    with pytest.warns(LagWarning, match="autocorrelation"):
        EffectiveSDEEstimator(SurrogateOptions(members=2, hidden=(4,), epochs=2,
                                               method=TrajectoryMethod.EULER)).fit(x[..., None], dt=h, lag=100 * h, variables=["x"])


# ----------------------------------------------------------------------------------------------
# Model mechanics: derivatives, gradient structure, simulation, torchsde protocol
# ----------------------------------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.func imports torch.jit
@pytest.mark.parametrize("form", list(DiffusionForm))
@pytest.mark.parametrize("m", [1, 2])
def test_taylor_mode_derivatives_match_autograd(form, m):
    from torch.func import jacfwd, vmap

    sde = EffectiveSDE(m, members=3, hidden=(7, 5), diffusion=form, seed=m)
    sde.set_scaling(np.arange(m) * 0.3, 1 + np.arange(m), 0.2, 2 + np.arange(m), 0.7 + np.arange(m))
    x = torch.randn(6, m, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def point(xp):
        b, S = sde._parts(xp[None], need_grad=True)
        return b[:, 0], (S @ S.transpose(-1, -2))[:, 0]

    b, J, Hb, A, dA, HA = sde._jets(x)
    d1, d2 = vmap(jacfwd(point))(x), vmap(jacfwd(jacfwd(point)))(x)
    for got, ref in ((J, d1[0].permute(1, 0, 2, 3)), (Hb, d2[0].permute(1, 0, 2, 3, 4)),
                     (dA, d1[1].permute(1, 0, 2, 3, 4)), (HA, d2[1].permute(1, 0, 2, 3, 4, 5))):
        torch.testing.assert_close(got, ref, rtol=1e-12, atol=1e-12)


def test_second_order_moments_match_the_generator_expansion():
    """A hand-set member with b = -0.7 tanh(x) and constant A: the second-order moments are
    b t + (b b' + A b''/2) t^2/2 and A t + 2 b' A t^2/2, with b', b'' written out by hand."""
    sde = EffectiveSDE(1, members=2, hidden=(3,), diffusion=DiffusionForm.SCALAR)
    with torch.no_grad():
        for net in (sde.drift_net, sde.diff_net):
            for w in net.weights:
                w.zero_()
            for b in net.biases:
                b.zero_()
        # drift: tanh'(0) = 1, so out = w1 * w0 * z: b = -k x with k = 0.7
        sde.drift_net.weights[0][:, 0, 0] = 1.0
        sde.drift_net.weights[1][:, 0, 0] = -0.7
    x = torch.tensor([[0.3], [-1.2]], dtype=torch.float64)
    xs = x.numpy()[:, 0]
    lag = 1e-2
    mu, C = member_moments(sde, x, lag, 2)
    b_lin = sde.drift(xs)[:, 0]
    # L b = b b' + (a/2) b'' with b' = -0.7 sech^2 x, b'' = 1.4 sech^2 x tanh x.
    sech2 = 1 / np.cosh(xs) ** 2
    a = sde.diffusion(xs)[:, 0, 0]
    Lb = b_lin * (-0.7 * sech2) + 0.5 * a * (1.4 * sech2 * np.tanh(xs))
    np.testing.assert_allclose(mu[0, :, 0].detach().numpy(), b_lin * lag + Lb * lag**2 / 2, rtol=1e-12)
    np.testing.assert_allclose(C[0, :, 0, 0].detach().numpy(), a * lag + 2 * (-0.7 * sech2) * a * lag**2 / 2,
                               rtol=1e-12)


def test_gradient_structure_drift_is_the_stated_formula():
    """b = -A grad U / 2 + div A / 2, checked by central differences of U and A (m = 2)."""
    sde = EffectiveSDE(2, members=3, gradient=True, seed=4)
    x = np.random.default_rng(0).normal(size=(5, 2))
    h = 1e-5
    e = np.eye(2)
    U = lambda p: np.stack([sde.potential(p, member=k) for k in range(3)])  # noqa: E731
    gU = np.stack([(U(x + h * e[i]) - U(x - h * e[i])) / (2 * h) for i in range(2)], -1)
    dA = np.stack([(sde.members_diffusion(x + h * e[j]) - sde.members_diffusion(x - h * e[j])) / (2 * h)
                   for j in range(2)], -1)
    divA = np.einsum("enijj->eni", dA)
    ref = -0.5 * np.einsum("enij,enj->eni", sde.members_diffusion(x), gU) + 0.5 * divA
    np.testing.assert_allclose(sde.members_drift(x), ref, atol=1e-7)


def test_potential_requires_gradient_structure():
    with pytest.raises(ValueError, match="gradient=True"):
        EffectiveSDE(1, members=2).potential(np.zeros(3))


def test_simulation_is_reproducible_and_split_invariant():
    sde = EffectiveSDE(2, members=4, seed=9, diffusion=DiffusionForm.CHOLESKY)
    kw = dict(t_end=0.5, dt=0.01, save_every=10, seed=123)
    for member in (None, 2, "sample"):
        whole = sde.simulate(n_paths=10, member=member, **kw)
        again = sde.simulate(n_paths=10, member=member, **kw)
        np.testing.assert_array_equal(whole.trajectory.values, again.trajectory.values)
        a = sde.simulate(n_paths=6, member=member, **kw)
        b = sde.simulate(n_paths=4, path_offset=6, member=member, **kw)
        np.testing.assert_allclose(np.concatenate([a.trajectory.values, b.trajectory.values]),
                                   whole.trajectory.values, rtol=0, atol=1e-13)
        assert whole.trajectory.dims == ("realization", "time", "state")
        assert list(whole.state.values) == ["x0", "x1"] and whole.time.values[-1] == pytest.approx(0.5)
    other = sde.simulate(n_paths=10, member=None, **{**kw, "seed": 124})
    assert not np.allclose(other.trajectory.values[:, -1], whole.trajectory.values[:, -1])


def test_sample_member_paths_follow_their_member():
    sde = EffectiveSDE(1, members=3, seed=2)
    kw = dict(t_end=0.2, dt=0.01, save_every=20, seed=8, x0=0.1)
    s = sde.simulate(n_paths=9, member="sample", **kw).trajectory.values
    for k in range(3):
        one = sde.simulate(n_paths=9, member=k, **kw).trajectory.values
        np.testing.assert_allclose(s[k::3], one[k::3], rtol=0, atol=1e-13)


def test_simulation_euler_step_matches_a_hand_step():
    sde = EffectiveSDE(1, members=2, seed=1)
    ds = sde.simulate(t_end=0.01, dt=0.01, x0=0.4, n_paths=3, seed=5, member=1, tables=False)
    xi = ms._core.normals(5, 0, 3, 0, 1, False, int(Stream.SURROGATE))[:, 0]  # the surrogate's stream
    b = sde.drift(np.array([0.4]), member=1)[0, 0]
    s = math.sqrt(sde.diffusion(np.array([0.4]), member=1)[0, 0, 0])
    np.testing.assert_allclose(ds.trajectory.values[:, -1, 0], 0.4 + b * 0.01 + s * 0.1 * xi, rtol=1e-13)


def test_simulation_reports_failed_paths():
    sde = EffectiveSDE(1, members=2, seed=1)
    with torch.no_grad():
        sde.b_scale.fill_(math.inf)  # the first step overflows
    ds = sde.simulate(t_end=0.05, dt=0.01, x0=1.0, n_paths=4, seed=0, member=0, save_every=1)
    assert int(ds.n_failed) == 4 and np.all(ds.status.values == 1) and np.all(ds.fail_step.values == 0)
    assert np.all(ds.final_state.values == 1.0)  # the last finite state
    assert np.all(np.isnan(ds.trajectory.values[:, 1:]))


@pytest.mark.parametrize("kwargs, match", [
    (dict(t_end=1.0, dt=0.0), "dt"),
    (dict(t_end=1.0, dt=0.3), "t_end"),
    (dict(t_end=1.0, dt=0.1, n_paths=0), "n_paths"),
    (dict(t_end=1.0, dt=0.1, member="all"), "member"),
    (dict(t_end=1.0, dt=0.1, member=5), "member"),
    (dict(t_end=1.0, dt=0.1, x0=[1.0, 2.0, 3.0]), "x0"),
    (dict(t_end=1.0, dt=0.1, x0=float("nan")), "x0"),
    (dict(t_end=1.0, dt=0.1, seed=-1), "seed"),
    (dict(t_end=1.0, dt=0.1, save_every=3), "save_every"),
    (dict(t_end=1.0, dt=0.1, threads=0), "threads"),
])
def test_simulation_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EffectiveSDE(1, members=2).simulate(**kwargs)


def test_torchsde_protocol():
    sde = EffectiveSDE(2, members=3, seed=1)
    y = torch.randn(5, 2, dtype=torch.float64)
    assert sde.sde_type == "ito" and sde.noise_type == "general"
    torch.testing.assert_close(sde.f(0.0, y), sde.drift(y))
    g = sde.g(0.0, y)
    assert g.shape == (5, 2, 2)
    torch.testing.assert_close(g @ g.transpose(-1, -2), sde.diffusion(y))
    torchsde = pytest.importorskip("torchsde")
    with torch.no_grad():
        ys = torchsde.sdeint(sde, y, torch.tensor([0.0, 0.1], dtype=torch.float64), dt=0.01)
    assert ys.shape == (2, 5, 2) and bool(torch.isfinite(ys).all())


def test_torch_inputs_are_differentiable():
    sde = EffectiveSDE(1, members=2, seed=1)
    x = torch.linspace(-1, 1, 5, dtype=torch.float64)[:, None].requires_grad_(True)
    sde.drift(x).sum().backward()
    assert x.grad is not None and bool(torch.isfinite(x.grad).all())


# ----------------------------------------------------------------------------------------------
# Bad input to the estimator and the options
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, match", [
    (dict(members=1), "members"), (dict(hidden=()), "hidden"), (dict(hidden=(0,)), "hidden"),
    (dict(diffusion="cholesky"), "diffusion"), (dict(method="euler"), "method"),
    (dict(lr=0.0), "lr"), (dict(lr=float("nan")), "lr"), (dict(weight_decay=-1.0), "weight_decay"),
    (dict(validation_fraction=0.5), "validation_fraction"), (dict(epochs=-1), "epochs"),
    (dict(batch_size=0), "batch_size"), (dict(seed=-2), "seed"), (dict(threads=0), "threads"),
    (dict(gradient=1), "gradient"),
])
def test_options_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SurrogateOptions(**kwargs)


def test_estimator_bad_input(tmp_path, avg1a):
    est = EffectiveSDEEstimator(SurrogateOptions(members=2, hidden=(4,), epochs=2, lbfgs_steps=0))
    traj = np.cumsum(np.random.default_rng(0).normal(size=(3, 200, 1)), axis=1) * 0.1
    with pytest.raises(ValueError, match="dt"):
        est.fit(traj)
    bad = traj.copy()
    bad[1, 5, 0] = np.nan
    with pytest.raises(ValueError, match=r"non-finite value at index \(1, 5, 0\)"):
        est.fit(bad, dt=0.1, variables=["x"])
    with pytest.raises(ValueError, match="not a multiple"):
        est.fit(traj, dt=0.1, lag=0.15, variables=["x"])
    with pytest.raises(ValueError, match="lag"):
        est.fit(traj, dt=0.1, lag=-1.0, variables=["x"])
    with pytest.raises(ValueError, match="samples per path"):
        est.fit(traj, dt=0.1, lag=15.0, variables=["x"])
    with pytest.raises(ValueError, match="shape"):
        est.fit(np.zeros((2, 3, 4, 5)), dt=0.1, variables=["x"])
    with pytest.raises(FileNotFoundError, match="nope.nc"):
        est.fit(tmp_path / "nope.nc")
    with pytest.raises(ValueError, match="neither"):
        est.fit(avg1a.drop_vars(["F"]))
    with pytest.raises(ValueError, match="lag and dt"):
        est.fit(avg1a, lag=0.1)
    few = avg1a.isel(point=slice(0, 3))
    with pytest.raises(ValueError, match="at least 4"):
        est.fit(few)
    with pytest.raises(ValueError, match="options"):
        EffectiveSDEEstimator("fast")
    with pytest.raises(RuntimeError, match="fit"):
        EffectiveSDEEstimator().fetch_model()


def test_nonconverged_points_are_left_out_with_a_warning(avg1a):
    ds = avg1a.copy(deep=True)
    ds["F"][3, 0] = np.nan
    est = EffectiveSDEEstimator(SurrogateOptions(members=2, hidden=(8,), epochs=20, lbfgs_steps=0))
    with pytest.warns(UserWarning, match="1 of 41 points"):
        est.fit(ds)
    assert est.summary_["n_points"] == 40


# ----------------------------------------------------------------------------------------------
# Files and the CLI
# ----------------------------------------------------------------------------------------------

def test_fit_from_files_and_cli_train(tmp_path, avg1a, traj3a, capsys):
    est_path = tmp_path / "avg.nc"
    ms.save_dataset(avg1a, est_path)
    out = tmp_path / "s.h5"
    rc = cli_main(["train", "--data", str(est_path), "--from-estimates", "--members", "3", "--hidden", "8",
                   "--epochs", "30", "--quiet", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "from estimates" in text and str(out) in text
    sde = load_surrogate(out)
    assert sde.members == 3 and sde.provenance["pathway"] == "estimates"
    assert sde.provenance["source"]["file"].endswith("avg.nc")
    traj_path = tmp_path / "traj.nc"
    ms.save_dataset(traj3a.isel(realization=slice(0, 8)), traj_path)
    rc = cli_main(["train", "--data", str(traj_path), "--from-trajectories", "--lag", "0.08", "--members", "2",
                   "--hidden", "8", "--epochs", "20", "--workers", "1", "--quiet", "--out", str(tmp_path / "t.h5")])
    assert rc == 0
    assert "lag 0.08 (multiscale)" in capsys.readouterr().out
    sde = load_surrogate(tmp_path / "t.h5")
    assert sde.provenance["source"]["file"].endswith("traj.nc")
    assert sde.provenance["lag"] == pytest.approx(0.08)
    # One torch thread by default (no intra-op threads spinning against other work).
    assert sde.provenance["options"]["threads"] == 1 and sde.provenance["options"]["workers"] == 1
    assert cli_main(["train", "--data", str(traj_path), "--from-trajectories", "--workers", "0",
                     "--out", str(out)]) == 2
    assert "workers=0" in capsys.readouterr().err
    # Wrong kind of data, bad flags: exit code 2 and a message naming the problem.
    assert cli_main(["train", "--data", str(traj_path), "--from-estimates", "--out", str(out)]) == 2
    assert "no averaged estimates" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(tmp_path / "x.nc"), "--from-estimates", "--out", str(out)]) == 2
    assert "no such file" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(est_path), "--from-estimates", "--hidden", "a,b",
                     "--out", str(out)]) == 2


def test_save_load_round_trip_of_a_trained_model(tmp_path, sde1a):
    sde = sde1a.fetch_model()
    p = save_surrogate(sde, tmp_path / "m.h5")
    back = load_surrogate(p)
    np.testing.assert_array_equal(back.drift(X_TEST), sde.drift(X_TEST))
    np.testing.assert_array_equal(back.drift_spread(X_TEST), sde.drift_spread(X_TEST))
    a = sde.simulate(t_end=0.1, dt=0.01, n_paths=5, seed=2, member="sample")
    b = back.simulate(t_end=0.1, dt=0.01, n_paths=5, seed=2, member="sample")
    np.testing.assert_array_equal(a.trajectory.values, b.trajectory.values)
    assert back.provenance == sde.provenance


def test_trajectories_of_a_full_system_model_only_its_slow_variables():
    ds = ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=4.0, n_paths=8, seed=2, save_every=50)
    assert list(ds.state.values) == ["x", "y"]
    est = EffectiveSDEEstimator(SurrogateOptions(members=2, hidden=(4,), epochs=5,
                                                 method=TrajectoryMethod.EULER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        sde = est.fit(ds).fetch_model()
    assert sde.names == ("x",) and sde.provenance["source"]["model"] == "fast_ou_linear"
    with pytest.raises(ValueError, match=r"\['z'\]"):
        est.fit(ds, variables=["z"])


def test_long_trajectories_are_thinned_to_a_bounded_number_of_pairs(monkeypatch):
    import multiscale.surrogate._train as tr

    monkeypatch.setattr(tr, "MAX_PAIRS", 1000)
    x = np.cumsum(np.random.default_rng(0).normal(size=(4, 2000, 1)), axis=1) * 0.01
    est = EffectiveSDEEstimator(SurrogateOptions(members=2, hidden=(4,), epochs=3,
                                                 method=TrajectoryMethod.EULER))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        est.fit(x, dt=0.1, lag=0.1, variables=["x"])
    assert est.summary_["pair_stride"] == 8 and est.summary_["n_pairs"] <= 1000


def test_streaming_observables_equal_statistics_of_the_saved_paths():
    """Window means, variances and histograms of the surrogate simulation, against the same
    statistics of the stored trajectory (the semantics of multiscale.simulate's observables)."""
    sde = EffectiveSDE(1, members=3, seed=2)
    obs = ms.Observables(("x",), start=0.5, window=0.5, histogram=ms.Histogram(bins=10, lo=-2, hi=2))
    ds = sde.simulate(t_end=2.0, dt=0.01, n_paths=300, seed=1, save_every=1, observables=obs, member="sample")
    x, t = ds.trajectory.values[:, :, 0], ds.time.values
    assert ds.sizes["window"] == 3
    for w, (a, b) in enumerate(zip(ds.window_start.values, ds.window_end.values)):
        v = x[:, (t > a + 1e-12) & (t <= b + 1e-12)].ravel()
        assert int(ds.obs_count[w, 0]) == v.size
        np.testing.assert_allclose(float(ds.obs_mean[w, 0]), v.mean(), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(float(ds.obs_var[w, 0]), v.var(ddof=1), rtol=1e-10)
        np.testing.assert_array_equal(ds.hist_count.values[w, 0], np.histogram(v, bins=10, range=(-2, 2))[0])
        assert int(ds.hist_underflow[w, 0]) == (v < -2).sum() and int(ds.hist_overflow[w, 0]) == (v >= 2).sum()
    with pytest.raises(ValueError, match="'y' is not a state"):
        sde.simulate(t_end=1.0, dt=0.1, observables=ms.Observables(("y",)))
