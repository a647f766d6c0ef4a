"""Learning from trajectories (issue: right on metastable data): which states are slow, the lag
rule on nonlinear and metastable dynamics, and metastability of the learned surrogate against
exact quadratures and the full system's in-kernel first passages."""
from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale as ms  # noqa: E402
from multiscale.surrogate import (EffectiveSDEEstimator, LagWarning, StateRolesWarning,  # noqa: E402
                                  SurrogateOptions, TrajectoryMethod, choose_lag, lag_ladder)
from multiscale.validate import mfpt, stationary_density  # noqa: E402

TINY = dict(members=2, hidden=(4,), epochs=4, method=TrajectoryMethod.EULER)


# ----------------------------------------------------------------------------------------------
# The slow variables travel with the data
# ----------------------------------------------------------------------------------------------

def test_simulation_datasets_record_which_states_are_slow():
    ds = ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=2.0, n_paths=4, seed=2, save_every=20,
                     save_fast=True)
    assert json.loads(ds.attrs["slow_states_json"]) == ["x"]
    assert json.loads(ds.attrs["fast_states_json"]) == ["y"]
    assert list(ds.state.values) == ["x", "y"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        sde = EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(ds).fetch_model()
    assert sde.names == ("x",)  # the fast variable is saved, and not modelled
    # The attribute decides even for a model the catalogue does not know.
    foreign = ds.assign_attrs(model="my_own_model")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        assert EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(foreign).fetch_model().names == ("x",)
    # A dataset that does not say: a warning naming the states it will model.
    bare = ds.copy()
    bare.attrs = {}
    with pytest.warns(StateRolesWarning, match=r"\['x', 'y'\]"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LagWarning)
            sde = EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(bare).fetch_model()
    assert sde.names == ("x", "y")
    with pytest.warns(StateRolesWarning, match="2 columns"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LagWarning)
            EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(ds.trajectory.values, dt=0.02)
    bad = ds.assign_attrs(slow_states_json=json.dumps(["z"]))
    with pytest.raises(ValueError, match=r"\['z'\]"):
        EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(bad)


@pytest.mark.slow
def test_a_model_language_dataset_records_its_slow_state(tmp_path):
    """The user's case: a bistable model written in the model language (JIT-compiled)."""
    model = ms.Model("bistable", slow={"x": "x - x^3 + c*(y - x)"}, fast={"y": "-(y - x)"},
                     slow_noise={"x": "sigma"}, fast_noise={"y": "sqrt(2)"},
                     params={"c": 0.5, "sigma": 0.6}, default_eps=0.01)
    ds = ms.simulate(model, eps=0.01, dt=1e-3, t_end=2.0, n_paths=4, seed=1, save_every=20, save_fast=True)
    assert json.loads(ds.attrs["slow_states_json"]) == ["x"]
    path = tmp_path / "sim.nc"
    ms.save_dataset(ds, path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        assert EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(path).fetch_model().names == ("x",)


# ----------------------------------------------------------------------------------------------
# The lag rule on nonlinear and metastable data
# ----------------------------------------------------------------------------------------------

def _double_well_paths(s: float, h: float, n_paths: int, n_times: int, seed: int) -> np.ndarray:
    ds = ms.simulate("double_well", params={"sigma": s}, dt=h / 10, t_end=h * (n_times - 1), n_paths=n_paths,
                     seed=seed, x0=np.where(np.arange(n_paths) % 2, 1.0, -1.0), save_every=10)
    return ds.trajectory.values


def test_lag_rule_takes_the_shortest_lag_on_a_one_scale_double_well():
    """No fast scale: the locally de-trended differenced rate is settled at the shortest lag
    (the old global linear de-trending fell with the lag and took the longest)."""
    arr = _double_well_paths(0.7, 0.02, 16, 5001, seed=3)
    lad = lag_ladder(arr, 0.02)
    assert choose_lag(lad) == 1
    # The apparent rate at the shortest lag is the diffusion s^2 up to the curvature term
    # E[b'] A lag (a few per cent): well inside 5%.
    assert abs(lad["v"][0, 0] / 0.49 - 1) < 0.05, lad["v"][:, 0]
    est = EffectiveSDEEstimator(SurrogateOptions(**{**TINY, "epochs": 2}))
    with warnings.catch_warnings():
        warnings.simplefilter("error", LagWarning)
        est.fit(arr, dt=0.02, variables=["x"])
    rule = est.summary_["lag_rule"]
    assert est.lag_ == pytest.approx(0.02) and rule["fast_scale_resolved"] is False and rule["reliable"]
    assert len(rule["region_differenced_rate"]) == 3
    with pytest.warns(LagWarning, match="curvature|autocorrelation"):
        est.fit(arr, dt=0.02, lag=1.28, variables=["x"])


def test_a_lag_the_data_cannot_support_warns():
    """Increments whose rate keeps changing at every lag (a ballistic, smooth path): no settled
    lag, and a LagWarning says so."""
    rng = np.random.default_rng(0)
    t = np.arange(4000) * 0.01
    arr = np.stack([np.sin(0.05 * t + p) + 1e-4 * rng.standard_normal(t.size) for p in rng.uniform(0, 6, 8)])
    with pytest.warns(LagWarning, match="no lag|guess"):
        EffectiveSDEEstimator(SurrogateOptions(**TINY)).fit(arr[..., None], dt=0.01, variables=["x"])


# ----------------------------------------------------------------------------------------------
# Metastability of the learned surrogate (slow statistical checks)
# ----------------------------------------------------------------------------------------------

def _member_fields(sde, e: int):
    return (lambda x: sde.drift(np.asarray(x)[:, None], member=e)[:, 0],
            lambda x: sde.diffusion(np.asarray(x)[:, None], member=e)[:, 0, 0])


def _surrogate_mfpt(sde, x0: float, target: float, lower: float) -> tuple[float, float]:
    """The learned SDE's MFPT by quadrature, per member: ensemble mean and spread (the learning
    error bar)."""
    vals = np.array([mfpt(*_member_fields(sde, e), x0, target, lower=lower) for e in range(sde.members)])
    return float(vals.mean()), float(vals.std(ddof=1))


def _fit(arr: np.ndarray, h: float, seed: int = 0):
    opts = SurrogateOptions(members=5, hidden=(32, 32), epochs=600, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LagWarning)  # the default lag must not warn
        est = EffectiveSDEEstimator(opts).fit(arr, dt=h, variables=["x"])
    return est, est.fetch_model()


@pytest.mark.slow
def test_one_scale_double_well_mfpt_and_density_match_the_exact_quadratures():
    s, h = 0.7, 0.02
    arr = _double_well_paths(s, h, 32, 10001, seed=5)
    est, sde = _fit(arr, h)
    assert est.lag_ == pytest.approx(h)
    drift, diff = (lambda x: x - x**3), (lambda x: np.full_like(x, s * s))
    for x0, target, lower in ((-1.0, 1.0, -2.2), (1.0, -1.0, 2.2)):
        exact = mfpt(drift, diff, x0, target, lower=lower)
        mean, spread = _surrogate_mfpt(sde, x0, target, lower)
        assert abs(mean - exact) < 3 * spread + 0.05 * exact, (x0, mean, spread, exact)
    lo, hi = -2.0, 2.0
    x, p_exact = stationary_density(drift, diff, lo, hi)
    dens = np.array([stationary_density(*_member_fields(sde, e), lo, hi)[1] for e in range(sde.members)])
    tv = lambda p, q: 0.5 * np.trapezoid(np.abs(p - q), x)  # noqa: E731
    spread = np.std([tv(d, dens.mean(0)) for d in dens], ddof=1)
    assert tv(dens.mean(0), p_exact) < 0.03 + 3 * spread, (tv(dens.mean(0), p_exact), spread)


@pytest.mark.slow
@pytest.mark.parametrize("model, wells", [("fast_ou_linear", (-1.2247, 1.2247)),
                                          ("tilted_double_well", (-1.2, 1.4))])
def test_learned_from_full_system_trajectories_mfpts_match_the_full_system(model, wells):
    """Problems 1a and 2 at eps = 0.01, learned from 32 full-system paths of 200 time units
    sampled every 0.02: the MFPTs between the wells in both directions agree with the full
    system's in-kernel first passages, and the invariant density with the full system's."""
    eps, h = 0.01, 0.02
    ds = ms.simulate(model, eps=eps, dt=1e-3, t_end=200.0, n_paths=32, seed=5, save_every=20)
    arr = ds.trajectory.sel(state=json.loads(ds.attrs["slow_states_json"])).values
    est, sde = _fit(arr, h)
    assert est.lag_ == pytest.approx(h)  # the sampling does not resolve eps: the shortest lag
    lo, hi = float(arr.min()), float(arr.max())
    a, b = wells
    for x0, target, lower in ((a, b, lo), (b, a, hi)):
        full = ms.validate.mean_first_passage_time(model, x0=x0, target=target, dt=1e-3, eps=eps,
                                                   n_paths=2000, max_time=400.0, seed=7)
        mean, spread = _surrogate_mfpt(sde, x0, target, lower)
        tol = 3 * math.hypot(full.stderr, spread) + 0.05 * full.mean
        assert abs(mean - full.mean) < tol, (model, x0, mean, spread, full.mean, full.stderr)
    # Invariant density: the surrogate's (quadrature, reflecting at the data range) against the
    # full system's in-kernel histograms (160 paths in 8 batches, 100 time units of burn-in:
    # several well-to-well relaxation times, so the wells' populations have equilibrated).
    full = ms.validate.stationary_histogram(model, lo=lo, hi=hi, bins=40, t_burn=100.0, t_end=300.0, dt=1e-3,
                                            n_paths=160, n_batches=8, eps=eps, seed=13,
                                            x0=np.where(np.arange(160) % 2, b, a)[:, None])
    edges, counts = full.edges, full.counts
    x, p = stationary_density(*_member_fields(sde, 0), lo, hi)
    dens = np.mean([stationary_density(*_member_fields(sde, e), lo, hi)[1] for e in range(sde.members)], 0)
    ref = np.array([np.trapezoid(dens[(x >= u) & (x <= v)], x[(x >= u) & (x <= v)]) for u, v in zip(edges[:-1], edges[1:])])
    dist = ms.validate.density_distance(counts, ref / ref.sum(), edges=edges, seed=1)
    assert dist.estimate < max(dist.noise_floor, 0.03) + 3 * dist.stderr, dist


def test_progress_names_the_step_phase_and_members(capsys):
    x = np.cumsum(np.random.default_rng(0).normal(size=(4, 400, 1)), axis=1) * 0.1
    opts = SurrogateOptions(members=2, hidden=(4,), epochs=50, progress=True, patience=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        EffectiveSDEEstimator(opts).fit(x, dt=0.1, variables=["x"])
    err = capsys.readouterr().err
    assert "step 25/50 (Euler warm-up) 2 members" in err and "val" in err and "done" in err


# ----------------------------------------------------------------------------------------------
# Throughput: the fused tanh jet and member groups in lock-step
# ----------------------------------------------------------------------------------------------

def _torch_tanh_jet(a, da, d2a):
    """The jet in plain torch autograd (the reference of the fused kernel)."""
    t = torch.tanh(a)
    s = 1 - t * t
    d2h = -2 * t[..., None, None, :] * s[..., None, None, :] * da[..., :, None, :] * da[..., None, :, :]
    return t, s[..., None, :] * da, d2h if d2a is None else d2h + s[..., None, None, :] * d2a


@pytest.mark.parametrize("m, second", [(1, False), (1, True), (3, True)])
def test_fused_tanh_jet_and_its_gradient_match_torch(m, second):
    from multiscale.surrogate._model import tanh_jet

    gen = torch.Generator().manual_seed(m)
    f64 = dict(dtype=torch.float64, generator=gen)
    a = (2 * torch.randn(3, 5, 6, **f64)).requires_grad_(True)
    da = torch.randn(3, 5, m, 6, **f64).requires_grad_(True)
    d2a = torch.randn(3, 5, m, m, 6, **f64).requires_grad_(True) if second else None
    got, want = tanh_jet(a, da, d2a), _torch_tanh_jet(a, da, d2a)
    for g, w in zip(got, want):
        assert torch.allclose(g, w, rtol=0, atol=1e-14)
    ins = (a, da) + ((d2a,) if second else ())
    cot = [torch.randn(w.shape, **f64) for w in want]
    g_got = torch.autograd.grad(got, ins, cot)
    g_want = torch.autograd.grad(want, ins, cot)
    for g, w in zip(g_got, g_want):
        assert torch.allclose(g, w, rtol=0, atol=1e-13)
    assert torch.autograd.gradcheck(lambda *v: tanh_jet(v[0], v[1], v[2] if second else None), ins)
    # float32 to float32 rounding
    g32 = tanh_jet(a.detach().float(), da.detach().float(), None if d2a is None else d2a.detach().float())
    for g, w in zip(g32, want):
        assert g.dtype == torch.float32 and torch.allclose(g.double(), w, rtol=1e-5, atol=1e-6)


def test_fused_tanh_jet_rejects_inconsistent_arrays():
    from multiscale import _core

    a, da = np.zeros((2, 4)), np.zeros((2, 1, 4))
    with pytest.raises(ValueError, match="widths"):
        _core.tanh_jet(a=a, da=np.zeros((2, 1, 3)), d2a=None)
    with pytest.raises(ValueError, match="d2a must be"):
        _core.tanh_jet(a=a, da=da, d2a=np.zeros((2, 2, 2, 4)))
    with pytest.raises(ValueError, match="dtype of a"):
        _core.tanh_jet(a=a, da=da.astype(np.float32), d2a=None)
    with pytest.raises(ValueError, match="float32 or float64"):
        _core.tanh_jet(a=a.astype(np.int64), da=da, d2a=None)


@pytest.mark.parametrize("m, method", [(1, TrajectoryMethod.MULTISCALE), (2, TrajectoryMethod.MULTISCALE),
                                       (2, TrajectoryMethod.EULER)])
def test_the_fit_does_not_depend_on_the_number_of_workers(m, method):
    """Member groups train in threads in lock-step: the same model, history and stop steps for
    1, 2 and 3 workers, with early stops and the second-order phase switch exercised."""
    rng = np.random.default_rng(3)
    x = np.zeros((6, 300, m))
    for t in range(1, 300):  # an OU process, coupled when m = 2
        x[:, t] = x[:, t - 1] - 0.05 * x[:, t - 1] @ np.eye(m) * (1 + 0.5 * np.arange(m)) \
            + 0.2 * rng.normal(size=(6, m))
    names = [f"x{i}" for i in range(m)]
    fits = []
    for workers in (1, 2, 3):  # 6 members: two groups of three
        opts = SurrogateOptions(members=6, hidden=(8, 8), epochs=120, patience=25, method=method,
                                workers=workers, seed=4)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LagWarning)
            est = EffectiveSDEEstimator(opts).fit(x, dt=0.1, variables=names)
        fits.append((est.fetch_model().state_arrays(), est.history_, est.summary_))
    ref = fits[0]
    assert ref[2]["epochs"] < 120 or len(set(ref[2]["validation_loss"])) > 1
    for arrays, hist, summary in fits[1:]:
        assert arrays.keys() == ref[0].keys()
        for k in arrays:
            assert np.array_equal(arrays[k], ref[0][k]), k
        assert hist == ref[1]
        assert summary["validation_loss"] == ref[2]["validation_loss"]
        assert summary["epochs"] == ref[2]["epochs"]
        assert summary.get("fast_scale_covariance") == ref[2].get("fast_scale_covariance")


def test_a_failing_member_group_stops_the_others(monkeypatch):
    """An error in one group's thread reaches the caller and releases the groups waiting for it
    at the next check (no hang)."""
    import threading

    from multiscale.surrogate import _train

    real = _train.member_moments
    calls = {"worker": 0}

    def failing(model, x, lag, order):
        if threading.current_thread() is not threading.main_thread():
            calls["worker"] += 1
            if calls["worker"] > 30:
                raise FloatingPointError("injected failure in a worker group")
        return real(model, x, lag, order)

    monkeypatch.setattr(_train, "member_moments", failing)
    x = np.cumsum(np.random.default_rng(0).normal(size=(4, 400, 1)), axis=1) * 0.1
    opts = SurrogateOptions(members=4, hidden=(4,), epochs=200, patience=0, workers=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LagWarning)
        with pytest.raises(FloatingPointError, match="injected"):
            EffectiveSDEEstimator(opts).fit(x, dt=0.1, variables=["x"])
    assert threading.active_count() == 1 or all(
        not t.name.startswith("Thread") or not t.is_alive() for t in threading.enumerate()
        if t is not threading.main_thread())
