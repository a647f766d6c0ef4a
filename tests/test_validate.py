"""Validation layer against exact answers (reference problems 1a, 2, 5, 6 of docs/reference_problems.md), with tolerances
from the estimators' own standard errors; exact values are computed here by quadrature."""
from __future__ import annotations

import importlib.util
import json
import math

import numpy as np
import pytest

import multiscale as ms
from multiscale import SimulationError
from multiscale.validate import (AMSOptions, ValidationSettings, ams, committor, exact_limit, first_passage,
                                 mean_first_passage_time, mfpt, stationary_density, stationary_histogram, validate)

HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
P5_MFPT = 120.00574203  # problem 5, sigma = 0.4, -1 -> +1


def _erfi_ratio(x0: float, b: float) -> float:
    """Problem 6a exactly: P(reach b before 0 | x0) = erfi(x0/sqrt 2)/erfi(b/sqrt 2)."""
    from scipy.special import erfi

    return float(erfi(x0 / math.sqrt(2)) / erfi(b / math.sqrt(2)))


# ----------------------------------------------------------------------------- first passages
def test_problem5_mfpt_from_simulation_matches_the_exact_integral():
    lim = exact_limit("double_well", {"sigma": 0.4})
    exact = mfpt(lim.drift, lim.diffusion, -1.0, 1.0)
    assert exact == pytest.approx(P5_MFPT, rel=1e-7)
    r = mean_first_passage_time("double_well", params={"sigma": 0.4}, x0=-1.0, target=1.0, dt=0.02,
                                n_paths=20000, max_time=3000.0, seed=3)
    assert abs(r.mean / exact - 1) < 0.03, r
    assert r.ci[0] < exact < r.ci[1], r
    assert r.stderr < 0.01 * exact
    assert r.rate_ci[0] < 1 / exact < r.rate_ci[1]


def test_bridge_test_removes_the_discrete_monitoring_bias():
    """6a at a non-rare level (x0 = 1, b = 2.5) with a coarse step dt = 0.01: raw monitoring
    misses excursions (about -10 s.e.), the Brownian-bridge test does not."""
    exact = _erfi_ratio(1.0, 2.5)
    kw = dict(x0=1.0, lo=0.0, hi=2.5, dt=1e-2, n_paths=100_000, max_time=100.0, seed=5)
    p_raw, se_raw = first_passage("ornstein_uhlenbeck", bridge=False, **kw).p_hi
    p_br, se_br = first_passage("ornstein_uhlenbeck", bridge=True, **kw).p_hi
    assert (exact - p_raw) / se_raw > 6
    assert abs(p_br - exact) < 4 * se_br


def test_first_passage_does_not_depend_on_threads_or_chunks():
    kw = dict(params={"a0": 0.1, "lam": 1.5}, eps=0.05, x0=-2.4, lo=-3.5, hi=0.0, dt=5e-4, max_time=50.0, seed=9)
    one = first_passage("tilted_double_well", n_paths=64, threads=1, **kw)
    two = first_passage("tilted_double_well", n_paths=64, threads=2, **kw)
    a = first_passage("tilted_double_well", n_paths=40, **kw)
    b = first_passage("tilted_double_well", n_paths=24, path_offset=40, **kw)
    for r in (two,):
        np.testing.assert_array_equal(one.time, r.time)
        np.testing.assert_array_equal(one.final_state, r.final_state)
    np.testing.assert_array_equal(one.time, np.concatenate([a.time, b.time]))
    assert one.names == ["x", "y"] and set(np.unique(one.outcome)) <= {0, 1}


def test_mfpt_refuses_censored_paths_and_bad_input():
    with pytest.raises(SimulationError, match=r"did not reach target=1.0.*MAX_STEPS"):
        mean_first_passage_time("double_well", params={"sigma": 0.4}, x0=-1.0, target=1.0, dt=0.01,
                                n_paths=50, max_time=1.0)
    with pytest.raises(ValueError, match="lo=1.0 and hi=0.0"):
        first_passage("double_well", x0=0.5, lo=1.0, hi=0.0, dt=0.01, n_paths=2, max_time=1.0)
    with pytest.raises(ValueError, match="coordinate='z'"):
        first_passage("double_well", x0=0.5, hi=1.0, dt=0.01, n_paths=2, max_time=1.0, coordinate="z")
    with pytest.raises(ValueError, match="max_time"):
        first_passage("double_well", x0=0.5, hi=1.0, dt=0.01, n_paths=2, max_time=-1.0)
    with pytest.raises(ValueError, match="already lies on target"):
        mean_first_passage_time("double_well", x0=1.0, target=1.0, dt=0.01, n_paths=2, max_time=1.0)
    with pytest.raises(ValueError, match=r"x0 contains a non-finite"):
        first_passage("double_well", x0=math.nan, hi=1.0, dt=0.01, n_paths=2, max_time=1.0)


def test_linear_coordinate_over_slow_and_fast_components():
    """xi = x + y on the full tilted system: exits follow the weighted coordinate (exactly at
    the step ends without the bridge test; with it, a step may exit from inside)."""
    kw = dict(eps=0.05, x0=0.0, y0=0.0, lo=-1.0, hi=1.0, dt=5e-4, n_paths=200, max_time=100.0, seed=2,
              coordinate={"x": 1.0, "y": 1.0})
    raw = first_passage("tilted_double_well", bridge=False, **kw)
    xi = raw.final_state.sum(1)
    assert np.all(raw.outcome <= 1)
    assert np.all(xi[raw.outcome == 1] >= 1.0) and np.all(xi[raw.outcome == 0] <= -1.0)
    br = first_passage("tilted_double_well", bridge=True, **kw)
    assert np.all(br.outcome <= 1) and np.all(np.nan_to_num(br.time) <= np.nan_to_num(raw.time))
    xi = br.final_state.sum(1)
    assert np.all(xi[br.outcome == 1] > 0.0) and np.all(xi[br.outcome == 0] < 0.0)


# ----------------------------------------------------------------------------- AMS
@pytest.mark.parametrize("model, params, x0, a, b", [
    ("ornstein_uhlenbeck", {"theta": 1.0, "D": 1.0}, 0.1, 0.0, 5.0),   # problem 6a, b = 5
    ("double_well", {"sigma": 0.2}, -0.9, -1.0, 1.0),                  # problem 6b, sigma = 0.2
])
def test_ams_rare_event_probabilities(model, params, x0, a, b):
    lim = exact_limit(model, params)
    exact = float(committor(lim.drift, lim.diffusion, a, b, x0))
    if model == "ornstein_uhlenbeck":
        assert exact == pytest.approx(_erfi_ratio(0.1, 5.0), rel=1e-6)
        assert exact == pytest.approx(1.7839662025e-06, rel=1e-6)
    else:
        assert exact == pytest.approx(1.2181598370e-06, rel=1e-6)
    r = ams(model, params=params, x0=x0, a=a, b=b, seed=1,
            options=AMSOptions(n_replicas=100, kill=5, n_runs=40, dt=1e-3))
    assert abs(r.probability / exact - 1) < 0.15, r
    assert r.ci[0] < exact < r.ci[1], r
    assert r.runs.shape == (40,) and np.all(r.iterations > 0)


def test_ams_is_reproducible_whatever_the_thread_count():
    kw = dict(params={"sigma": 0.3}, x0=-0.9, a=-1.0, b=1.0, seed=4,
              options=AMSOptions(n_replicas=20, kill=2, n_runs=3, dt=2e-3))
    r1 = ams("double_well", threads=1, **kw)
    r2 = ams("double_well", threads=2, **kw)
    np.testing.assert_array_equal(r1.runs, r2.runs)
    np.testing.assert_array_equal(r1.iterations, r2.iterations)


def test_ams_bad_input():
    with pytest.raises(ValueError, match="kill=10 must be < n_replicas=10"):
        AMSOptions(n_replicas=10, kill=10)
    with pytest.raises(ValueError, match="n_runs"):
        AMSOptions(n_runs=1)
    with pytest.raises(ValueError, match=r"outside \(a, b\)"):
        ams("double_well", x0=1.5, a=-1.0, b=1.0)
    with pytest.raises(ValueError, match="a=1.0 and b=-1.0"):
        ams("double_well", x0=0.0, a=1.0, b=-1.0)
    with pytest.raises(SimulationError, match="max_time"):
        ams("double_well", params={"sigma": 0.01}, x0=0.3, a=-1.0, b=1.0,
            options=AMSOptions(n_replicas=4, kill=1, n_runs=2, dt=1e-2, max_time=0.05))


# ----------------------------------------------------------------------------- invariant measure
@pytest.fixture(scope="module")
def hist1a():
    """Problem 1a full system at eps = 0.01: 2000 paths in 10 independent batches."""
    return stationary_histogram("fast_ou_linear", eps=0.01, lo=-3.0, hi=3.0, bins=40, t_burn=5.0, t_end=25.0,
                                dt=1e-3, n_paths=2000, n_batches=10, x0=np.linspace(-1.5, 1.5, 2000)[:, None],
                                seed=1)


def test_problem1a_density_distance_to_the_averaged_density_is_consistent_with_zero(hist1a):
    lim = exact_limit("fast_ou_linear")
    x, rho = stationary_density(lim.drift, lim.diffusion, -3.0, 3.0)
    # the averaged density is exp(1.5 x^2 - x^4/2) / Z
    ref = np.exp(1.5 * x**2 - 0.5 * x**4)
    np.testing.assert_allclose(rho, ref / np.trapezoid(ref, x), rtol=1e-6)
    pdf = lambda v: np.interp(v, x, rho)  # noqa: E731
    for kind in ("tv", "hellinger", "kl", "w1"):
        d = hist1a.distance(pdf, kind)
        assert d.consistent_with_zero, d
        assert d.ci[0] == 0.0 <= d.estimate
    e2, se2 = hist1a.moment(lambda v: v**2)
    assert abs(e2 - np.trapezoid(x**2 * rho, x)) < 4 * se2 + 0.005  # + binning (h^2/12)


def test_a_deliberately_wrong_density_is_flagged(hist1a):
    """The averaged density of a surrogate with the drift 1.3x - x^3 instead of 1.5x - x^3."""
    wrong = lambda v: np.exp(1.3 * v**2 - 0.5 * v**4)  # noqa: E731
    for kind in ("tv", "hellinger", "kl", "w1"):
        d = hist1a.distance(wrong, kind)
        assert not d.consistent_with_zero and d.ci[0] > 0, d


def test_histogram_batches_are_independent_chunks_of_one_run():
    kw = dict(lo=-3.0, hi=3.0, bins=20, t_burn=1.0, t_end=3.0, dt=1e-3, eps=0.01, seed=7)
    a = stationary_histogram("fast_ou_linear", n_paths=40, n_batches=4, **kw)
    b = stationary_histogram("fast_ou_linear", n_paths=40, n_batches=2, **kw)
    np.testing.assert_array_equal(a.counts.sum(0), b.counts.sum(0))
    np.testing.assert_array_equal(a.counts[:2].sum(0), b.counts[0])
    with pytest.raises(ValueError, match="n_paths=41 must be a multiple of n_batches=4"):
        stationary_histogram("fast_ou_linear", n_paths=41, n_batches=4, **kw)


# ----------------------------------------------------------------------------- surrogates
@pytest.fixture(scope="module")
def sde1a():
    avg = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, burn_in=5.0, time=300.0, replicas=8, batch=10.0),
                                seed=2).fit("fast_ou_linear", np.linspace(-2.6, 2.6, 27)).result_
    opts = ms.SurrogateOptions(members=4, hidden=(24, 24), epochs=600, lbfgs_steps=300, seed=1)
    return ms.EffectiveSDEEstimator(opts).fit(avg).fetch_model()


def _fields(sde, member=None):
    return (lambda v: sde.drift(v[:, None], member=member)[:, 0],
            lambda v: sde.diffusion(v[:, None], member=member)[:, 0, 0])


def test_surrogate_mfpt_by_simulation_equals_its_exact_quadrature(sde1a):
    """The surrogate's first passages (batched, Brownian bridge) against the exact 1-D MFPT of
    the same learned drift and diffusion: the engine simulates the model it claims to."""
    b, A = _fields(sde1a)
    xm = math.sqrt(1.5)
    exact = mfpt(b, A, -xm, 0.0, lower=float(sde1a.x_lo[0]))
    r = mean_first_passage_time(sde1a, x0=-xm, target=0.0, dt=2e-3, n_paths=3000, max_time=500.0, seed=1)
    assert abs(r.mean - exact) < 4 * r.stderr, (r, exact)
    one = mean_first_passage_time(sde1a, x0=-xm, target=0.0, dt=2e-3, n_paths=50, max_time=500.0, seed=1, member=2)
    assert one.mean != r.mean  # a single member is a different model


def test_surrogate_ams_matches_its_exact_committor(sde1a):
    b, A = _fields(sde1a)
    xm = math.sqrt(1.5)
    exact = float(committor(b, A, -xm, xm, -xm + 0.2))
    r = ams(sde1a, x0=-xm + 0.2, a=-xm, b=xm, seed=3, options=AMSOptions(n_replicas=50, kill=5, n_runs=12, dt=5e-3))
    assert abs(r.probability - exact) < 4 * r.stderr, (r, exact)


def test_validate_flags_a_wrong_surrogate_and_passes_a_good_one(sde1a, tmp_path):
    import copy

    settings = ValidationSettings.quick(eps=0.01, dt=1e-3, ams_surrogate=False, density_paths=400,
                                        density_batches=8, t_density=40.0)
    good = validate(sde1a, "fast_ou_linear", settings=settings, out=tmp_path / "good", progress=False)
    assert good.checks["full-system density consistent with the exact limit (TV)"]
    assert good.checks["surrogate density within TV 0.03 of the exact limit"]
    tv = good.dataset.distance.sel(kind="tv")
    assert float(tv.sel(comparison="learning")) < 0.03
    for f in ("report.md", "validation.nc"):
        assert (tmp_path / "good" / f).is_file()
    assert (tmp_path / "good" / "validation.png").is_file() == HAS_MATPLOTLIB  # the plot extra draws it
    wrong = copy.deepcopy(sde1a)
    with __import__("torch").no_grad():
        wrong.s_scale.mul_(1.25)  # diffusion 1.56x too large: a flatter density, faster transitions
    bad = validate(wrong, "fast_ou_linear", settings=settings, progress=False)
    assert not bad.checks["surrogate density within TV 0.03 of the exact limit"]
    assert not bad.passed
    d = bad.dataset.distance.sel(kind="tv")
    assert float(d.sel(comparison="total")) > float(bad.dataset.distance_ci_hi.sel(kind="tv", comparison="modelling"))
    meta = json.loads(bad.dataset.attrs["metastability"])
    assert len(meta["wells"]) == 2


def test_validate_bad_input(sde1a):
    with pytest.raises(ValueError, match="one slow variable"):
        validate(sde1a, "lorenz96", settings=ValidationSettings.quick())
    with pytest.raises(ValueError, match="ValidationSettings"):
        validate(sde1a, "fast_ou_linear", settings={"eps": 0.1})


# ----------------------------------------------------------------------------- exact limits
def test_exact_limit_of_problem2_matches_the_reference_table():
    lim = exact_limit("tilted_double_well")
    x = np.array([-3.0, -1.0, 0.0, 1.0, 2.5])
    np.testing.assert_allclose(lim.drift(x), [0.430817752138, -0.623243199463, 0.1, 0.823243199463,
                                              0.117384532605], atol=1e-11)
    assert mfpt(lim.drift, lim.diffusion, -2.3753627041, 2.6725105751) == pytest.approx(22.73530191, rel=1e-6)
    assert exact_limit("lorenz96") is None
