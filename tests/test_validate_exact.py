"""Exact 1-D validation numerics: quadrature answers, histogram distances, MSM timescales.

Reference numbers below were computed independently of this code (high-precision quadrature
of the textbook formulas); tolerances are stated next to each check with the reason.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, optimize, stats
from scipy.special import kv

from multiscale.validate._distances import (DistanceKind, DistanceResult, bin_probabilities,
                                            density_distance)
from multiscale.validate._exact1d import (Well, committor, effective_potential, find_wells,
                                          generator_eigenvalues, mfpt, scale_exponent,
                                          stationary_density)
from multiscale.validate._msm import MSMResult, msm_implied_timescales


def const(a: float):
    return lambda x: np.full_like(x, a)


def double_well(x):
    return x - x**3


# --------------------------------------------------------------------------------------------
# Mean first passage times and committors (all exact references; Simpson on 20001 points is
# accurate to ~1e-10 here, so rel 1e-7 leaves margin for the 9-digit references).


@pytest.mark.parametrize("sigma, x0, target, ref, rtol", [
    (0.4, -1.0, 1.0, 120.00574203, 1e-7),
    (0.5, -1.0, 1.0, 41.03428027, 1e-7),
    (0.4, -1.0, 0.0, 57.478304, 1e-6),   # reference given to 8 digits
    (0.28, -1.0, 1.0, 2815.30762196, 1e-7),
])
def test_mfpt_double_well(sigma, x0, target, ref, rtol):
    a = const(sigma**2)
    assert mfpt(double_well, a, x0, target) == pytest.approx(ref, rel=rtol)
    # The mirror-image passage (downward direction, reflection at +inf) is the same number.
    assert mfpt(double_well, a, -x0, -target) == pytest.approx(ref, rel=rtol)


def test_mfpt_eyring_kramers_limit():
    # T_K (1 + 3D/2 + 57 D^2/8) is an asymptotic expansion in D = sigma^2/2: the remainder is
    # O(D^3) and must shrink as sigma decreases; at sigma = 0.28 it is below 1%.
    errs = []
    for sigma in (0.4, 0.3, 0.28, 0.25):
        d = sigma**2 / 2
        tk = math.pi * math.sqrt(2) * math.exp(1 / (2 * sigma**2)) * (1 + 1.5 * d + 57 * d**2 / 8)
        errs.append(abs(tk / mfpt(double_well, const(sigma**2), -1.0, 1.0) - 1))
    assert errs == sorted(errs, reverse=True)
    assert errs[2] < 1e-2
    # A 50 kT barrier (sigma^2 = 0.01, T ~ 2e22) stays finite and accurate thanks to the
    # log-space shifts: converged in n, and within the O(D^3) remainder (D = 0.005) of T_K.
    a = const(0.01)
    t = mfpt(double_well, a, -1.0, 1.0)
    assert t == pytest.approx(mfpt(double_well, a, -1.0, 1.0, n=80001), rel=1e-10)
    tk = math.pi * math.sqrt(2) * math.exp(50.0) * (1 + 1.5 * 0.005 + 57 * 0.005**2 / 8)
    assert t == pytest.approx(tk, rel=3e-5)


def test_mfpt_reflecting_boundary_closed_forms():
    # Brownian motion (b = 0, A = 1) reflected at 0: T(0 -> L) = L^2, in both directions.
    bm = const(0.0), const(1.0)
    assert mfpt(*bm, 0.0, 2.0, lower=0.0) == pytest.approx(4.0, rel=1e-12)
    assert mfpt(*bm, 0.0, -2.0, lower=0.0) == pytest.approx(4.0, rel=1e-12)
    # Reflection at x0' < x0: T(x0 -> L) = L^2 - x0^2 for lower = 0, started at x0 = 1.
    assert mfpt(*bm, 1.0, 2.0, lower=0.0) == pytest.approx(3.0, rel=1e-12)
    # A far reflecting wall changes nothing measurable compared with lower=None.
    a = const(0.16)
    assert mfpt(double_well, a, -1.0, 1.0, lower=-3.0) == pytest.approx(120.00574203, rel=1e-7)
    assert mfpt(double_well, a, 0.5, 0.5) == 0.0


@pytest.mark.parametrize("drift, a_val, a, b, x, ref", [
    (lambda x: -x, 2.0, 0.0, 5.0, 0.1, 1.7839662025e-06),
    (lambda x: -x, 2.0, 0.0, 6.0, 0.1, 8.8823270213e-09),
    (double_well, 0.04, -1.0, 1.0, -0.9, 1.2181598370e-06),
    (double_well, 0.16, -1.0, 1.0, -0.9, 5.9275708407e-03),
])
def test_committor_values(drift, a_val, a, b, x, ref):
    # rel 1e-6: references have 11 digits; quadrature error is ~1e-11 (measured).
    q = committor(drift, const(a_val), a, b, x)
    assert q.shape == ()
    assert float(q) == pytest.approx(ref, rel=1e-6)


def test_committor_array_shape_and_ends():
    x = np.array([[-1.0, -0.3], [0.0, 1.0]])
    q = committor(double_well, const(0.16), -1.0, 1.0, x)
    assert q.shape == (2, 2)
    assert q[0, 0] == 0.0 and q[1, 1] == pytest.approx(1.0, abs=1e-15)
    assert q[1, 0] == pytest.approx(0.5, abs=1e-12)  # symmetry of the double well
    # OU with A = 2 has s = exp(x^2/2): closed form through the imaginary error function.
    ou = committor(lambda y: -y, const(2.0), 0.0, 1.0, np.array([0.25, 0.5]))
    from scipy.special import erfi
    assert ou == pytest.approx(erfi(np.array([0.25, 0.5]) / math.sqrt(2)) / erfi(1 / math.sqrt(2)), rel=1e-10)


# --------------------------------------------------------------------------------------------
# Tilted double well: averaged drift of a fast/slow problem, b = a0 - x + lam m(lam x),
# m(s) = d/ds log Z(s), Z(s) = int exp(-y^4/4 + y^2/2 + s y) dy.

_Y = np.linspace(-7.0, 7.0, 561)  # the integrand is Gaussian-like: trapezoid converges
#                                   exponentially; the peak at |y| <= 4 for |s| <= 45.


def _m(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    flat = s.ravel()
    out = np.empty_like(flat)
    for i in range(0, flat.size, 8192):
        e = -_Y**4 / 4 + _Y**2 / 2 + flat[i:i + 8192, None] * _Y
        w = np.exp(e - e.max(axis=1, keepdims=True))
        out[i:i + 8192] = (w @ _Y) / w.sum(axis=1)
    return out.reshape(s.shape)


def tilted(x):
    return 0.1 - x + 1.5 * _m(1.5 * x)


def test_tilted_stationary_law():
    # rel 1e-8: the accuracy target; the density is negligible (< e^-100) beyond |x| = 20.
    x, rho = stationary_density(tilted, const(2.0), -20.0, 20.0, 20001)
    mean = integrate.simpson(x * rho, x=x)
    var = integrate.simpson((x - mean) ** 2 * rho, x=x)
    assert x[10000] == 0.0
    p_pos = integrate.simpson(rho[10000:], x=x[10000:])
    assert mean == pytest.approx(0.7294113355, rel=1e-8)
    assert var == pytest.approx(7.0672141450, rel=1e-8)
    assert p_pos == pytest.approx(0.6202436866, rel=1e-8)


def test_tilted_wells_and_passage_times():
    wells = find_wells(tilted, const(2.0), -12.0, 12.0)
    assert len(wells) == 2 and all(isinstance(w, Well) for w in wells)
    left, right = wells
    # Minima and saddle are refined by root finding on U': 1e-6 is the stated precision.
    assert left.minimum == pytest.approx(-2.3753627041, abs=1e-6)
    assert right.minimum == pytest.approx(2.6725105751, abs=1e-6)
    assert left.basin[1] == right.basin[0] == pytest.approx(-0.0747191312, abs=1e-6)
    assert left.basin[0] == -12.0 and right.basin[1] == 12.0
    assert right.depth > left.depth > 0  # the right well is the deeper one (P(X>0) = 0.62)
    x, u = effective_potential(tilted, const(2.0), -12.0, 12.0, 20001)
    assert u.min() == 0.0 and abs(x[np.argmin(u)] - right.minimum) < 2e-3
    # rel 1e-6: the references have 10 digits; quadrature error measured at ~5e-10.
    assert mfpt(tilted, const(2.0), left.minimum, right.minimum) == pytest.approx(22.73530191, rel=1e-6)
    assert mfpt(tilted, const(2.0), right.minimum, left.minimum) == pytest.approx(36.61158752, rel=1e-6)


# --------------------------------------------------------------------------------------------
# Landscape


def test_state_dependent_diffusion_density():
    # b = -x^3, A = 2(1+x^2): -int 2b/A = -(x^2/2 - log(1+x^2)/2), so
    # rho ∝ exp(-x^2/2) sqrt(1+x^2) / (1+x^2) = exp(-x^2/2) / sqrt(1+x^2),
    # with int_R exp(-x^2/2)/sqrt(1+x^2) dx = e^{1/4} K_0(1/4).
    x, rho = stationary_density(lambda y: -y**3, lambda y: 2 * (1 + y**2), -12.0, 12.0)
    exact = np.exp(-x**2 / 2) / np.sqrt(1 + x**2) / (math.exp(0.25) * kv(0, 0.25))
    core = exact > 1e-12
    np.testing.assert_allclose(rho[core], exact[core], rtol=1e-8)
    assert np.max(np.abs(rho - exact)) < 1e-12


def test_scale_exponent_ou_exact():
    # OU with A = 2: Phi = x^2/2 - x_0^2/2; Simpson is exact for the linear integrand.
    grid = np.linspace(-3.0, 4.0, 701)
    phi = scale_exponent(lambda y: -y, const(2.0), grid)
    np.testing.assert_allclose(phi, grid**2 / 2 - 4.5, atol=1e-12)


def test_wells_use_effective_potential_and_merge_shallow():
    # Noise-induced well: no drift at all, but U = log A has its minimum at 0.
    wells = find_wells(const(0.0), lambda y: 1 + y**2, -3.0, 3.0)
    assert len(wells) == 1 and wells[0].minimum == pytest.approx(0.0, abs=1e-9)
    assert wells[0].depth == math.inf and wells[0].basin == (-3.0, 3.0)
    # Double well: barrier 1/(2 sigma^2) = 3.125 kT on each side.
    two = find_wells(double_well, const(0.16), -2.5, 2.5)
    assert [w.minimum for w in two] == pytest.approx([-1.0, 1.0], abs=1e-9)
    assert [w.depth for w in two] == pytest.approx([3.125, 3.125], rel=1e-6)
    # A min_depth above the barrier merges the two wells.
    assert len(find_wells(double_well, const(0.16), -2.5, 2.5, min_depth=4.0)) == 1
    # Wiggles of 1e-4 kT on a single well are ignored.
    wig = find_wells(lambda y: -y + 2e-4 * np.cos(40 * y), const(2.0), -6.0, 6.0)
    assert len(wig) == 1 and wig[0].minimum == pytest.approx(0.0, abs=1e-3)


# --------------------------------------------------------------------------------------------
# Generator spectrum


@pytest.mark.parametrize("theta", [1.0, 2.5])
def test_generator_eigenvalues_ou(theta):
    # dX = -theta X dt + sqrt(2D) dW with D/theta = 1: eigenvalues 0, -theta, -2 theta, ...
    # [-8, 8] holds all but e^-32 of the mass, so the reflecting walls are invisible.
    ev = generator_eigenvalues(lambda y: -theta * y, const(2.0 * theta), -8.0, 8.0, k=4, n=2000)
    assert abs(ev[0]) < 1e-8 * theta
    np.testing.assert_allclose(ev[1:], -theta * np.arange(1, 4), rtol=1e-4)
    assert np.all(np.diff(ev) < 0)


def test_generator_eigenvalues_double_well_convergence_and_mfpt():
    a = const(0.0625)  # sigma = 0.25
    ev = [generator_eigenvalues(double_well, a, -2.5, 2.5, k=3, n=n) for n in (1000, 2000, 4000)]
    d1, d2 = ev[0][1:] - ev[1][1:], ev[1][1:] - ev[2][1:]
    # Second order: halving h divides the change by ~4 (checked on lambda_2; lambda_1 ~ 1e-4
    # is so flat in h that its change is at round-off level, ~1e-12).
    assert d1[1] / d2[1] == pytest.approx(4.0, rel=0.05)
    # O(h^2): the n = 2000 error is ~(4/3) |d2| ~ 2e-6 relative on lambda_2.
    np.testing.assert_allclose(ev[2][1:], ev[1][1:], rtol=3e-6)
    # Two-state picture: -lambda_1 = k_LR + k_RL = 2 / T(-1 -> +1), up to corrections that
    # vanish with the barrier (measured 8e-4 at 8 kT).
    t = mfpt(double_well, a, -1.0, 1.0, lower=-2.5)
    assert -ev[2][1] * t / 2 == pytest.approx(1.0, rel=2e-3)


# --------------------------------------------------------------------------------------------
# Distances

EDGES = np.linspace(-4.0, 4.0, 41)


def test_bin_probabilities_pdf_and_cdf_agree():
    pdf = bin_probabilities(stats.norm.pdf, EDGES)
    cdf = bin_probabilities(stats.norm.cdf, EDGES, cdf=True)
    np.testing.assert_allclose(pdf, cdf, rtol=1e-10)
    assert pdf.sum() == pytest.approx(1.0, abs=1e-15)


def test_distance_exact_values():
    e = np.array([0.0, 1.0, 2.0, 3.0])
    c = np.array([[4, 0, 0], [6, 0, 0]])  # all mass in bin 0
    q = np.array([0.0, 0.0, 1.0])
    assert density_distance(c, q, edges=e, kind="tv").estimate == pytest.approx(1.0)
    assert density_distance(c, q, edges=e, kind="hellinger").estimate == pytest.approx(1.0)
    # U[0,1] vs U[2,3]: W1 = 2.
    assert density_distance(c, q, edges=e, kind=DistanceKind.W1).estimate == pytest.approx(2.0)
    c2 = np.array([[1, 1], [1, 1]])
    kl = density_distance(c2, np.array([0.25, 0.75]), edges=e[:3], kind="kl").estimate
    assert kl == pytest.approx(0.5 * math.log(2) + 0.5 * math.log(2 / 3))


def test_w1_matches_fine_integral():
    rng = np.random.default_rng(3)
    e = np.sort(rng.uniform(0, 5, 9))
    p_counts = rng.integers(0, 50, (3, 8))
    q = rng.dirichlet(np.ones(8))
    got = density_distance(p_counts, q, edges=e, kind="w1").estimate
    p = p_counts.sum(0) / p_counts.sum()
    xf = np.linspace(e[0], e[-1], 400001)
    fp = np.interp(xf, e, np.concatenate([[0], np.cumsum(p)]))
    fq = np.interp(xf, e, np.concatenate([[0], np.cumsum(q)]))
    assert got == pytest.approx(integrate.trapezoid(np.abs(fp - fq), xf), rel=1e-6)


def test_distance_result_deterministic_and_sane():
    q = bin_probabilities(stats.norm.pdf, EDGES)
    c = np.random.default_rng(0).multinomial(2000, q, size=10)
    r1 = density_distance(c, q, edges=EDGES, kind="hellinger", seed=5)
    r2 = density_distance(c, q, edges=EDGES, kind="hellinger", seed=5)
    assert isinstance(r1, DistanceResult) and r1 == r2 and r1.kind == "hellinger"
    assert r1.stderr > 0 and 0 <= r1.ci[0] <= r1.ci[1] and r1.noise_floor > 0
    two = density_distance(c, counts_ref=c[::-1] + 1, edges=EDGES, kind="kl")
    assert np.isfinite(two.estimate) and two.noise_floor > 0


def _shift_with_tv(q, tv):
    def probs(d):
        return bin_probabilities(lambda x: stats.norm.pdf(x - d), EDGES)
    d = optimize.brentq(lambda d: 0.5 * np.abs(probs(d) - q).sum() - tv, 0.0, 1.0)
    return probs(d)


def test_noise_floor_calibrated_one_sample():
    # 200 independent data sets (20 batches x 2000 samples) from the exact law: the test
    # "estimate <= noise_floor" has nominal level 5%, so acceptance should be ~95%; the band
    # 88%-99.5% is about +-3 binomial standard deviations (sd = 1.5%) plus slack for the
    # approximate calibration.  A law at TV distance 0.05 (shifted normal) must be flagged
    # in >= 95% of data sets (the floor is ~0.013 in TV at this sample size).
    q = bin_probabilities(stats.norm.pdf, EDGES)
    wrong = _shift_with_tv(q, 0.05)
    rng = np.random.default_rng(11)
    h0 = rng.multinomial(2000, q, size=(200, 20))
    h1 = rng.multinomial(2000, wrong, size=(200, 20))
    for kind in ("tv", "hellinger", "kl", "w1"):
        accept = np.mean([density_distance(h0[i], q, edges=EDGES, kind=kind, n_boot=200, seed=i)
                          .consistent_with_zero for i in range(200)])
        reject = np.mean([not density_distance(h1[i], q, edges=EDGES, kind=kind, n_boot=200, seed=i)
                          .consistent_with_zero for i in range(200)])
        assert 0.88 <= accept <= 0.995, (kind, accept)
        assert reject >= 0.95, (kind, reject)


def test_noise_floor_calibrated_two_sample():
    # Same bands as above, for the permutation null of two batched histograms.
    q = bin_probabilities(stats.norm.pdf, EDGES)
    wrong = _shift_with_tv(q, 0.05)
    rng = np.random.default_rng(12)
    a = rng.multinomial(2000, q, size=(200, 10))
    b = rng.multinomial(2000, q, size=(200, 12))
    w = rng.multinomial(2000, wrong, size=(200, 12))
    for kind in ("tv", "hellinger", "kl", "w1"):
        accept = np.mean([density_distance(a[i], counts_ref=b[i], edges=EDGES, kind=kind, n_boot=200,
                                           seed=i).consistent_with_zero for i in range(200)])
        reject = np.mean([not density_distance(a[i], counts_ref=w[i], edges=EDGES, kind=kind,
                                               n_boot=200, seed=i).consistent_with_zero
                          for i in range(200)])
        assert 0.88 <= accept <= 0.995, (kind, accept)
        assert reject >= 0.95, (kind, reject)


# --------------------------------------------------------------------------------------------
# MSM


def test_msm_ou_timescale():
    # Exact OU (theta = 1, D = 1) by its AR(1) transition, stationary start.
    rng = np.random.default_rng(7)
    dt, n_paths, n_times = 0.1, 200, 2001
    a = math.exp(-dt)
    x = np.empty((n_paths, n_times))
    x[:, 0] = rng.standard_normal(n_paths)
    z = rng.standard_normal((n_paths, n_times - 1)) * math.sqrt(1 - a * a)
    for j in range(1, n_times):
        x[:, j] = a * x[:, j - 1] + z[:, j - 1]
    edges = np.linspace(-3.0, 3.0, 31)
    res = msm_implied_timescales(x, edges=edges, lag=20, dt=dt, k=2)
    assert isinstance(res, MSMResult) and res.lag_time == pytest.approx(2.0)
    assert res.n_states == 30 and res.timescales.shape == (2,) and res.ci.shape == (2, 2)
    # Discretisation allowance: the MSM eigenvalue is <= exp(-tau/t1) (variational), and with
    # step-function states it is about exp(-tau) (1 - delta), delta = 1 - |Q x|^2 / |x|^2 the
    # part of the eigenfunction x lost by projecting on the bins.  Then t_msm ~ 1 - delta/tau.
    e = np.concatenate([[-np.inf], edges[1:-1], [np.inf]])
    p = np.diff(stats.norm.cdf(e))
    m1 = -np.diff(stats.norm.pdf(e))  # E[x; bin]
    delta = 1 - np.sum(m1**2 / p)
    allowance = 2 * delta / res.lag_time  # ~0.004, twice the first-order estimate
    t1 = -1 / generator_eigenvalues(lambda y: -y, const(2.0), -8.0, 8.0, k=2)[1]
    assert t1 == pytest.approx(1.0, rel=1e-6)
    assert t1 - allowance - 4 * res.stderr[0] <= res.timescales[0] <= t1 + 4 * res.stderr[0]
    assert res.ci[0, 0] <= 1.0 + allowance and res.ci[0, 1] >= 1.0 - allowance
    assert 0.02 > res.stderr[0] / res.timescales[0] > 0.001


# --------------------------------------------------------------------------------------------
# Errors name the offending value


def test_errors_exact1d():
    with pytest.raises(ValueError, match=r"diffusion must be finite and positive.*= -?0\.0"):
        stationary_density(const(0.0), lambda y: y**2, -1.0, 1.0, 101)
    with pytest.raises(ValueError, match=r"drift must be finite.*nan"):
        stationary_density(lambda y: np.where(y > 0.5, np.nan, 0.0), const(1.0), -1.0, 1.0, 101)
    with pytest.raises(ValueError, match=r"lo=1\.0 and hi=1\.0 must be finite with lo < hi"):
        stationary_density(const(0.0), const(1.0), 1.0, 1.0)
    with pytest.raises(ValueError, match=r"n=3 must be an integer >= 5"):
        effective_potential(const(0.0), const(1.0), 0.0, 1.0, 3)
    with pytest.raises(ValueError, match=r"x0=0\.0 outside .*lower=0\.5"):
        mfpt(const(0.0), const(1.0), 0.0, 1.0, lower=0.5)
    with pytest.raises(ValueError, match=r"x must lie in .* got 1\.5"):
        committor(const(0.0), const(1.0), 0.0, 1.0, np.array([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"k=0"):
        generator_eigenvalues(const(0.0), const(1.0), 0.0, 1.0, k=0)
    with pytest.raises(ValueError, match=r"not become negligible"):
        mfpt(const(0.0), const(1.0), 0.0, 1.0)  # Brownian motion: no far reflecting side
    with pytest.raises(ValueError, match=r"overflows"):
        mfpt(double_well, const(5e-4), -1.0, 1.0)  # 1000 kT barrier: T ~ e^1000


def test_errors_distances():
    q = np.full(4, 0.25)
    e = np.linspace(0, 1, 5)
    ok = np.ones((3, 4))
    with pytest.raises(ValueError, match=r"3 bins but edges define 4"):
        density_distance(np.ones((3, 3)), q, edges=e)
    with pytest.raises(ValueError, match=r"counts\[1, 2\] = -1\.0"):
        density_distance(np.array([[1, 1, 1, 1], [1, 1, -1, 1]]), q, edges=e)
    with pytest.raises(ValueError, match=r"at least 2 independent batches; got 1"):
        density_distance(np.ones((1, 4)), q, edges=e)
    with pytest.raises(ValueError, match=r"batch 1 has zero total"):
        density_distance(np.array([[1, 1, 1, 1], [0, 0, 0, 0]]), q, edges=e)
    with pytest.raises(ValueError, match=r"sum to 1; got sum = 0\.8"):
        density_distance(ok, np.full(4, 0.2), edges=e)
    with pytest.raises(ValueError, match=r"shape \(4,\); got \(3,\)"):
        density_distance(ok, np.full(3, 1 / 3), edges=e)
    with pytest.raises(ValueError, match=r"exactly one"):
        density_distance(ok, q, counts_ref=ok, edges=e)
    with pytest.raises(ValueError, match=r"'chi2'"):
        density_distance(ok, q, edges=e, kind="chi2")
    with pytest.raises(ValueError, match=r"reference\[3\] = 0 but bin 3 has counts"):
        density_distance(ok, np.array([0.5, 0.25, 0.25, 0.0]), edges=e, kind="kl")
    with pytest.raises(ValueError, match=r"strictly increasing"):
        density_distance(ok, q, edges=e[::-1])


def test_errors_msm():
    x = np.zeros((2, 10))
    with pytest.raises(ValueError, match=r"lag=10"):
        msm_implied_timescales(x, edges=np.linspace(-1, 1, 5), lag=10, dt=0.1)
    with pytest.raises(ValueError, match=r"dt=0"):
        msm_implied_timescales(x, edges=np.linspace(-1, 1, 5), lag=1, dt=0)
    with pytest.raises(ValueError, match=r"traj\[0, 3\] = nan"):
        y = x.copy()
        y[0, 3] = np.nan
        msm_implied_timescales(y, edges=np.linspace(-1, 1, 5), lag=1, dt=0.1)
    with pytest.raises(ValueError, match=r"connected set has 1 states"):
        msm_implied_timescales(x, edges=np.linspace(-1, 1, 5), lag=1, dt=0.1, k=1)
