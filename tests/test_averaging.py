"""The frozen-x micro-solver (:class:`multiscale.averaging.AveragingEstimator`) against exact
averaged and homogenized coefficients.

Exact answers come from :mod:`multiscale.exact` (quadrature and closed forms of reference
problems 1a, 1b, 2 and 4). Statistical checks compare an estimate with the exact value in units
of the estimator's own standard error (``|est - exact| < 4 se``) and check that the standard
errors are honest: over many points and seeds, the z-scores must look standard normal (count of
``|z| > 2`` below the 99.9% quantile of ``Binomial(N, 0.0455)``, mean of ``z^2`` within four of
its standard deviations ``sqrt(2/N)`` of 1). Seeds are fixed, so every check is deterministic.

Times in ``AveragingOptions`` are in the fast process's own units (``t/eps``, ``t/eps^2``, or
model time for Lorenz-96).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import multiscale as ms
from multiscale import exact
from multiscale.averaging import AveragingEstimator, AveragingOptions


Z_MAX = 4.0  # |est - exact| < Z_MAX * se
P_TWO_SIGMA = 2 * stats.norm.sf(2.0)  # P(|Z| > 2) = 0.0455


def fit(model, x, *, seed=0, params=None, eps=None, device="cpu", threads=None, **options):
    """Run the estimator and return its dataset."""
    est = AveragingEstimator(AveragingOptions(**options), seed=seed, device=device, threads=threads)
    assert est.fit(model, x, params=params, eps=eps) is est
    return est.result_


def pooled_z(est, se, ref):
    """z-score of the inverse-variance weighted mean residual over points (sensitive to a
    common bias far below the per-point standard error)."""
    w = 1.0 / se**2
    return float(np.sum(w * (est - ref)) / math.sqrt(np.sum(w)))


def assert_honest_z(z):
    """z-scores of a correct estimator with honest standard errors look standard normal."""
    z = np.ravel(z)
    n = z.size
    n_big = int(np.sum(np.abs(z) > 2))
    limit = stats.binom.ppf(0.999, n, P_TWO_SIGMA)
    assert n_big <= limit, f"{n_big} of {n} |z| > 2 (99.9% quantile {limit}): standard errors too small"
    mean_z2 = float(np.mean(z**2))
    tol = 4 * math.sqrt(2.0 / n)
    assert abs(mean_z2 - 1) < tol, f"mean z^2 = {mean_z2:.3f} over {n} points, expected 1 +- {tol:.3f}"


# ----------------------------------------------------------------------------------------------
# exact answers used below
# ----------------------------------------------------------------------------------------------

# docs/reference_problems.md#problem-2-tilted_double_well, table of F(x) (a0 = 0.1, lam = 1.5), 12 decimals.
TDW_TABLE = {-3.0: 0.430817752138, -2.5: 0.082615467395, -2.0: -0.234471727745,
             -1.0: -0.623243199463, 0.0: 0.1, 1.0: 0.823243199463, 2.0: 0.434471727745,
             2.5: 0.117384532605, 3.0: -0.230817752138}


def test_exact_tilted_double_well_drift_matches_table():
    x = np.array(sorted(TDW_TABLE))
    F = exact.tilted_double_well_drift(x)
    np.testing.assert_allclose(F, [TDW_TABLE[v] for v in x], rtol=0, atol=1e-11)
    # second route: m(s) = d/ds log Z(s) by a central difference of the log-partition quadrature
    s = 1.5 * x
    h = 1e-4
    m_fd = [(exact.tilted_double_well_log_partition(v + h) - exact.tilted_double_well_log_partition(v - h))
            / (2 * h) for v in s]
    np.testing.assert_allclose(exact.tilted_double_well_fast_mean(s), m_fd, rtol=0, atol=1e-8)
    # F - a0 is odd
    np.testing.assert_allclose(exact.tilted_double_well_drift(-x) - 0.1, -(F - 0.1), atol=1e-12)


def test_exact_fast_ou_drifts():
    x = np.linspace(-2, 2, 9)
    np.testing.assert_allclose(exact.fast_ou_linear_drift(x), 1.5 * x - x**3, rtol=1e-15)
    np.testing.assert_allclose(exact.fast_ou_quadratic_drift(x), 0.5 + x + 0.5 * x**2 - x**3, rtol=1e-15)
    # Euler at fast step h: E[Y^2] = x^2 + 1/(1 - h/2)
    np.testing.assert_allclose(exact.fast_ou_quadratic_drift(x, h=0.1),
                               0.5 * (x**2 + 1 / 0.95) + x - x**3, rtol=1e-15)
    np.testing.assert_allclose(exact.fast_ou_noise_drift(x), -x**3)
    np.testing.assert_allclose(exact.fast_ou_noise_drift(x, ito_correction=False), -x - x**3)
    np.testing.assert_allclose(exact.fast_ou_noise_diffusion(x), 2 * (1 + x**2))


# ----------------------------------------------------------------------------------------------
# Problem 1a / 1b: averaging with a fast OU process (exact OU fast step)
# ----------------------------------------------------------------------------------------------

GRID = np.linspace(-2.0, 2.0, 50)
SEEDS_1 = range(6)
OPTS_1 = dict(dt=0.05, burn_in=10.0, time=200.0, replicas=16, batch=20.0)
DRIFT_1 = {"fast_ou_linear": exact.fast_ou_linear_drift, "fast_ou_quadratic": exact.fast_ou_quadratic_drift}
TAU_1 = {"fast_ou_linear": lambda x: exact.fast_ou_drift_correlation_time(x, "linear"),
         "fast_ou_quadratic": lambda x: exact.fast_ou_drift_correlation_time(x, "quadratic")}


@pytest.fixture(scope="module", params=sorted(DRIFT_1))
def problem1(request):
    """(model name, list of datasets over SEEDS_1) on the 50-point grid."""
    name = request.param
    return name, [fit(name, GRID, seed=s, **OPTS_1) for s in SEEDS_1]


def test_problem1_drift_within_4se_everywhere(problem1):
    name, runs = problem1
    ref = DRIFT_1[name](GRID)
    for seed, r in zip(SEEDS_1, runs):
        assert r.F.dims == ("point", "slow") and r.F.shape == (50, 1)
        np.testing.assert_array_equal(r.x.values[:, 0], GRID)
        assert r.attrs["fast_step"] == "exact_ou"
        assert np.all(r.converged.values == 1)
        assert np.all(r.n_replicas_ok.values == 16) and np.all(r.replica_status.values == 0)
        np.testing.assert_array_equal(r.averaging_time.values, 200.0)
        F, se = r.F.values[:, 0], r.F_stderr.values[:, 0]
        assert np.all(se > 0)
        z = (F - ref) / se
        assert np.all(np.abs(z) < Z_MAX), f"{name} seed {seed}: max |z| = {np.abs(z).max():.2f} at x = {GRID[np.argmax(np.abs(z))]:.3f}"
        # integrated autocorrelation time of f (batch means estimate it ~1/batch low)
        ratio = r.tau_int.values[:, 0] / TAU_1[name](GRID)
        assert np.all((ratio > 0.5) & (ratio < 1.5)) and 0.85 < ratio.mean() < 1.05, ratio


def test_problem1_standard_errors_are_honest(problem1):
    name, runs = problem1
    ref = DRIFT_1[name](GRID)
    z = np.concatenate([(r.F.values[:, 0] - ref) / r.F_stderr.values[:, 0] for r in runs])
    assert z.size == 300
    assert_honest_z(z)
    assert abs(z.mean()) < 4 / math.sqrt(z.size)  # no common bias


def test_fast_ou_linear_A_is_sigma_squared():
    x = np.linspace(-2, 2, 5)
    r = fit("fast_ou_linear", x, params={"sigma": 0.7}, dt=0.05, burn_in=1.0, time=20.0, batch=10.0,
            replicas=4)
    assert r.A.dims == ("point", "slow", "slow_j") and r.A.shape == (5, 1, 1)
    np.testing.assert_allclose(r.A.values, 0.49, rtol=1e-12)
    np.testing.assert_array_equal(r.A_alpha.values, r.A.values)
    np.testing.assert_array_equal(r.A_stderr.values, 0.0)  # additive noise: exact
    assert "A_green_kubo" not in r and "F_corrector" not in r  # averaging scaling


def test_fast_ou_quadratic_euler_bias_detected():
    """Euler at fast step 0.1 inflates Var(Y) to 1/(1 - 0.05): F is biased by c (v - 1) = 0.026,
    detected against the exact drift and consistent with the Euler chain's own average; the
    exact OU transition at the same step is unbiased."""
    opts = dict(dt=0.1, burn_in=10.0, time=400.0, replicas=16, batch=20.0)
    exact_F = exact.fast_ou_quadratic_drift(GRID)
    euler_F = exact.fast_ou_quadratic_drift(GRID, h=0.1)
    assert np.all(euler_F - exact_F > 0.026)

    r_eu = fit("fast_ou_quadratic", GRID, seed=11, fast_step=ms.FastStep.EULER, **opts)
    r_ou = fit("fast_ou_quadratic", GRID, seed=11, **opts)
    assert r_eu.attrs["fast_step"] == "euler" and r_ou.attrs["fast_step"] == "exact_ou"
    F_eu, se_eu = r_eu.F.values[:, 0], r_eu.F_stderr.values[:, 0]
    F_ou, se_ou = r_ou.F.values[:, 0], r_ou.F_stderr.values[:, 0]

    # Euler: far from the exact drift in pooled standard errors, consistent with its own limit
    z_bias = pooled_z(F_eu, se_eu, exact_F)
    assert z_bias > 6, f"Euler bias not detected: pooled z = {z_bias:.2f}"
    assert np.all(np.abs(F_eu - euler_F) < Z_MAX * se_eu)
    assert abs(pooled_z(F_eu, se_eu, euler_F)) < Z_MAX
    # exact OU step: unbiased, pointwise and pooled
    assert np.all(np.abs(F_ou - exact_F) < Z_MAX * se_ou)
    assert abs(pooled_z(F_ou, se_ou, exact_F)) < Z_MAX
    assert pooled_z(F_ou, se_ou, euler_F) < -6

    # a drift linear in Y (1a) is not biased by the Euler fast step
    r_lin = fit("fast_ou_linear", GRID, seed=12, fast_step=ms.FastStep.EULER, **opts)
    F, se = r_lin.F.values[:, 0], r_lin.F_stderr.values[:, 0]
    assert np.all(np.abs(F - exact.fast_ou_linear_drift(GRID)) < Z_MAX * se)
    assert abs(pooled_z(F, se, exact.fast_ou_linear_drift(GRID))) < Z_MAX


# ----------------------------------------------------------------------------------------------
# Problem 2: tilted fast double well (Euler fast step), adaptive averaging
# ----------------------------------------------------------------------------------------------

def test_tilted_double_well_adaptive_drift():
    """F at tabulated points to se < 0.005 in adaptive mode. The Euler fast step's O(dt) bias in
    F is about 0.55 dt at |x| = 3 and 0.8 dt at |x| = 1 (measured); dt = 0.0025 keeps it near
    0.002, half the target standard error."""
    x = np.array([-3.0, -1.0, 0.0, 1.0, 2.5, 3.0])
    time = 250.0
    r = fit("tilted_double_well", x, seed=2, dt=0.0025, burn_in=10.0, time=time, replicas=64,
            batch=10.0, target_stderr=0.004, max_time=10000.0)
    assert r.attrs["fast_step"] == "euler"
    F, se = r.F.values[:, 0], r.F_stderr.values[:, 0]
    np.testing.assert_array_equal(r.converged.values, 1)
    assert np.all(se <= 0.004) and np.all(se < 0.005)
    ref = exact.tilted_double_well_drift(x)
    np.testing.assert_allclose(ref, [TDW_TABLE[v] for v in x], atol=1e-11)
    z = (F - ref) / se
    assert np.all(np.abs(z) < Z_MAX), f"z = {np.round(z, 2)}"
    # adaptive: whole rounds, and the bistable point x = 0 (largest variance and correlation
    # time) needs the longest averaging
    t_avg = r.averaging_time.values
    np.testing.assert_array_equal(t_avg % time, 0.0)
    assert t_avg[2] == t_avg.max() and t_avg[2] > t_avg[0] and t_avg[2] > t_avg[-1]
    assert np.all(t_avg <= 10000.0)


# ----------------------------------------------------------------------------------------------
# Problem 4: homogenization with fast OU noise (Ito-Stratonovich correction, Green-Kubo A)
# ----------------------------------------------------------------------------------------------

X4 = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5])


@pytest.fixture(scope="module")
def problem4():
    return fit("fast_ou_noise", X4, seed=4, dt=0.05, burn_in=10.0, time=400.0, replicas=64, batch=10.0)


def test_fast_ou_noise_drift_is_ito_corrected(problem4):
    r = problem4
    assert r.attrs["scaling"] == "homogenization" and r.attrs["corrector"] == 1
    np.testing.assert_array_equal(r.converged.values, 1)
    F, se = r.F.values[:, 0], r.F_stderr.values[:, 0]
    # f1 = -x - x^3 is deterministic: its average is exact to rounding
    np.testing.assert_allclose(r.F_f1.values[:, 0], exact.fast_ou_noise_drift(X4, ito_correction=False),
                               rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(F - exact.fast_ou_noise_drift(X4)) <= Z_MAX * se + 1e-12)
    nz = X4 != 0
    z_wrong = np.abs(F - exact.fast_ou_noise_drift(X4, ito_correction=False))[nz] / se[nz]
    assert np.all(z_wrong > 8), f"F not resolved from the uncorrected drift: z = {np.round(z_wrong, 1)}"
    # the corrector E[(d/dx Phi) f0] = f f' = x
    c, cse = r.F_corrector.values[:, 0], r.F_corrector_stderr.values[:, 0]
    np.testing.assert_allclose(F, r.F_f1.values[:, 0] + c, rtol=1e-12, atol=1e-12)
    assert np.all(np.abs(c - X4) <= Z_MAX * cse + 1e-12)
    assert np.all(cse[nz] > 0)


@pytest.mark.parametrize("batch", [5.0, 10.0])
def test_fast_ou_noise_diffusion_green_kubo(problem4, batch):
    """A = 2 int E[f0 f0] = 2 (1 + x^2) at infinite batch length. The plain block estimator
    Var(I_T)/T is low by ~2/T (20% at batch 5, 10% at batch 10, i.e. about 5 and 2 standard
    errors per point here); the estimate must match the infinite-batch value within its own
    standard error, pointwise and pooled over the points."""
    r = problem4 if batch == 10.0 else fit("fast_ou_noise", X4, seed=5, dt=0.05, burn_in=10.0,
                                             time=400.0, replicas=64, batch=batch)
    A, Ase = r.A.values[:, 0, 0], r.A_stderr.values[:, 0, 0]
    ref = exact.fast_ou_noise_diffusion(X4)
    np.testing.assert_array_equal(r.A_alpha.values, 0.0)  # no direct slow noise
    np.testing.assert_allclose(A, r.A_green_kubo.values[:, 0, 0], rtol=1e-15)
    assert np.all(Ase > 0)
    z = (A - ref) / Ase
    assert np.all(np.abs(z) < Z_MAX), f"A z-scores {np.round(z, 2)}; A/exact = {np.round(A / ref, 3)}"
    assert abs(pooled_z(A, Ase, ref)) < Z_MAX, f"pooled z {pooled_z(A, Ase, ref):.2f}"


# ----------------------------------------------------------------------------------------------
# Vector slow variables: two-scale Lorenz-96
# ----------------------------------------------------------------------------------------------

X_L96 = np.array([[10.0, 10.0, 10.0, 10.0], [5.0, -2.0, 8.0, 1.0], [0.5, 3.0, -1.3, 12.7]])


def l96_resolved_drift(x, F):
    """-x_{k-1}(x_{k-2} - x_{k+1}) - x_k + F on the ring, rows of x independent."""
    return -np.roll(x, 1, axis=-1) * (np.roll(x, 2, axis=-1) - np.roll(x, -1, axis=-1)) - x + F


def l96_closure_numpy(x, *, J, h, b, c, sigma_y, dt, burn_in, time, replicas, seed):
    """Independent NumPy Euler-Maruyama of the frozen fast Lorenz-96 ring (all points at once):
    the closure -(h c/b) E[sum_j Y_jk] and its standard error over independent replicas."""
    P, K = x.shape
    n = K * J
    hcb = h * c / b
    rng = np.random.default_rng(seed)
    y = np.tile(0.01 * ((np.arange(n) % 7) - 3) / 3.0, (P, replicas, 1))
    forcing = hcb * np.repeat(x, J, axis=1)[:, None, :]
    n_burn, n_avg = round(burn_in / dt), round(time / dt)
    acc = np.zeros((P, replicas, K))
    for step in range(n_burn + n_avg):
        g = -c * b * np.roll(y, -1, -1) * (np.roll(y, -2, -1) - np.roll(y, 1, -1)) - c * y + forcing
        y = y + g * dt + sigma_y * math.sqrt(dt) * rng.standard_normal(y.shape)
        if step >= n_burn:
            acc += y.reshape(P, replicas, K, J).sum(-1)
    per_replica = -hcb * acc / n_avg
    return per_replica.mean(1), per_replica.std(1, ddof=1) / math.sqrt(replicas)


def test_lorenz96_uncoupled_closure_is_zero():
    """h = 0: the fast ring decouples, F is exactly the resolved drift (to summation rounding)
    and A = sigma_x^2 I."""
    p = dict(K=4, J=8, h=0.0, F=8.3, sigma_x=0.3, sigma_y=0.5)
    r = fit("lorenz96", X_L96, params=p, dt=0.001, burn_in=1.0, time=10.0, replicas=4, batch=1.0)
    assert r.F.shape == (3, 4) and r.A.shape == (3, 4, 4)
    assert list(r.slow.values) == ["x0", "x1", "x2", "x3"]
    np.testing.assert_array_equal(r.x.values, X_L96)
    F = r.F.values
    assert np.all(np.isfinite(F))
    closure = F - l96_resolved_drift(X_L96, 8.3)
    np.testing.assert_allclose(closure, 0.0, atol=1e-10 * np.abs(F).max())
    assert np.all(r.F_stderr.values < 1e-6)  # constant f: only rounding noise
    np.testing.assert_allclose(r.A.values, np.broadcast_to(0.09 * np.eye(4), (3, 4, 4)), rtol=1e-12, atol=0)
    assert np.isnan(r.attrs["eps"])


def test_lorenz96_coupled_closure_matches_independent_simulation():
    p = dict(K=4, J=8, h=1.0, b=10.0, c=4.0, F=10.0, sigma_y=0.5)
    opts = dict(dt=0.001, burn_in=1.0, time=10.0, batch=1.0)
    r = fit("lorenz96", X_L96, params=p, replicas=16, seed=7, **opts)
    F, se = r.F.values, r.F_stderr.values
    assert F.shape == (3, 4) and np.all(np.isfinite(F)) and np.all(se > 0)
    np.testing.assert_array_equal(r.converged.values, 1)
    closure = F - l96_resolved_drift(X_L96, p["F"])
    ref, ref_se = l96_closure_numpy(X_L96, J=8, h=1.0, b=10.0, c=4.0, sigma_y=0.5, replicas=64, seed=1,
                                    **{k: opts[k] for k in ("dt", "burn_in", "time")})
    z = (closure - ref) / np.hypot(se, ref_se)
    assert np.all(np.abs(z) < Z_MAX), f"closure z-scores {np.round(z, 2)}"
    # the coupling matters: the closure is resolved from zero at the uniform state
    assert np.all(np.abs(closure[0]) > 10 * se[0])
    # the uniform state is invariant under the ring shift by J: equal closures for every k
    assert np.ptp(closure[0]) < 2 * Z_MAX * se[0].max()


# ----------------------------------------------------------------------------------------------
# Reproducibility
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,x,options", [
    ("fast_ou_noise", X4, dict(dt=0.05, burn_in=2.0, time=40.0, replicas=20, batch=10.0)),
    ("tilted_double_well", np.linspace(-2, 2, 9), dict(dt=0.01, burn_in=2.0, time=20.0, replicas=24, batch=5.0)),
    ("fast_ou_quadratic", np.linspace(-2, 2, 5),
     dict(dt=0.05, burn_in=2.0, time=20.0, replicas=16, batch=5.0, target_stderr=0.05)),
])
def test_thread_count_and_seed_reproducibility(model, x, options):
    r1 = fit(model, x, seed=9, threads=1, **options)
    r2 = fit(model, x, seed=9, threads=2, **options)
    r_again = fit(model, x, seed=9, **options)
    r_other = fit(model, x, seed=10, **options)
    names = ["F", "F_stderr", "A", "A_stderr", "tau_int", "averaging_time", "converged"]
    if model == "fast_ou_noise":
        names += ["F_corrector", "F_corrector_stderr", "A_green_kubo"]
    for v in names:
        assert np.array_equal(r1[v].values, r2[v].values), f"{v} depends on the thread count"
        assert np.array_equal(r1[v].values, r_again[v].values), f"{v} not reproducible"
    # a different seed gives different numbers wherever F is random (F(0) = 0 exactly for
    # fast_ou_noise: f1(0) = 0 and the corrector's x-derivative vanishes there)
    random = r1.F_stderr.values > 0
    assert random.sum() >= random.size - 1
    assert np.all((r1.F.values != r_other.F.values)[random]), "a different seed must give different numbers"
    assert np.all(r1.F_stderr.values[random] != r_other.F_stderr.values[random])


# ----------------------------------------------------------------------------------------------
# Adaptive mode
# ----------------------------------------------------------------------------------------------

def test_adaptive_time_follows_variance():
    """Var(c Y^2) = c^2 (4 x^2 + 2) grows with |x|: larger x need more rounds to reach the target."""
    x = np.array([0.0, 1.0, 2.0])
    opts = dict(dt=0.05, burn_in=10.0, time=50.0, replicas=16, batch=10.0)
    fixed = fit("fast_ou_quadratic", x, seed=3, **opts)
    np.testing.assert_array_equal(fixed.averaging_time.values, 50.0)
    se1 = fixed.F_stderr.values[:, 0]
    target = 0.03
    assert se1[0] < target < se1[1] < se1[2]  # one round suffices at x = 0 only

    r = fit("fast_ou_quadratic", x, seed=3, target_stderr=target, **opts)
    t = r.averaging_time.values
    np.testing.assert_array_equal(r.converged.values, 1)
    assert np.all(r.F_stderr.values <= target)
    np.testing.assert_array_equal(t % 50.0, 0.0)
    assert t[0] == 50.0 and t[0] < t[1] < t[2] <= 20 * 50.0
    # same seed: the first round is the fixed run, so x = 0 stopped with identical numbers
    assert r.F.values[0, 0] == fixed.F.values[0, 0]
    ref = exact.fast_ou_quadratic_drift(x)
    assert np.all(np.abs(r.F.values[:, 0] - ref) < Z_MAX * r.F_stderr.values[:, 0])

    # a budget of one round: points that miss the target are flagged, the others are not
    r_tiny = fit("fast_ou_quadratic", x, seed=3, target_stderr=target, max_time=50.0, **opts)
    np.testing.assert_array_equal(r_tiny.averaging_time.values, 50.0)
    np.testing.assert_array_equal(r_tiny.converged.values, [1, 0, 0])
    np.testing.assert_array_equal(r_tiny.F.values, fixed.F.values)


# ----------------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model,x,kwargs,match", [
    ("fast_ou_linear", [], {}, "x_points is empty"),
    ("fast_ou_linear", np.zeros((0, 1)), {}, "x_points is empty"),
    ("fast_ou_linear", [0.0, 1.0, np.nan], {}, r"non-finite value at index \(2, 0\)"),
    ("fast_ou_linear", [0.0, np.inf], {}, "non-finite"),
    ("fast_ou_linear", np.zeros((5, 2)), {}, r"shape \(5, 2\)"),
    ("lorenz96", np.zeros((2, 3)), {"params": {"K": 4, "J": 2}}, r"shape \(2, 3\)"),
    ("fast_ou_linear", [["a"]], {}, "x_points"),
    ("double_well", [0.0], {}, "'double_well' has no explicit fast variables"),
    ("fast_ou_linear", [0.0], {"params": {"foo": 1.0}}, "unknown parameter 'foo'"),
    ("fast_ou_linear", [0.0], {"params": {"sigma": -1.0}}, "sigma=-1"),
    ("lorenz96", np.zeros((1, 4)), {"params": {"K": 4, "J": 2}, "eps": 0.1}, "eps=0.1"),
    ("fast_ou_linear", [0.0], {"eps": -0.1}, "eps=-0.1"),
    ("no_such_model", [0.0], {}, "no_such_model"),
])
def test_fit_rejects_bad_input(model, x, kwargs, match):
    est = AveragingEstimator(AveragingOptions(dt=0.05, burn_in=1.0, time=10.0, replicas=2, batch=5.0))
    with pytest.raises(ValueError, match=match):
        est.fit(model, x, **kwargs)
    assert est.result_ is None


@pytest.mark.parametrize("options,match", [
    (dict(dt=0.0), "dt=0.0"),
    (dict(dt=-0.01), "dt=-0.01"),
    (dict(dt=float("nan")), "dt=nan"),
    (dict(replicas=0), "replicas=0"),
    (dict(replicas=2.5), "replicas=2.5"),
    (dict(burn_in=-1.0), "burn_in=-1.0"),
    (dict(time=0.0), "time=0.0"),
    (dict(batch=-10.0), "batch=-10.0"),
    (dict(target_stderr=0.0), "target_stderr=0.0"),
    (dict(max_time=-5.0), "max_time=-5.0"),
    (dict(fast_step="euler"), "fast_step='euler'"),
])
def test_options_reject_bad_values(options, match):
    with pytest.raises(ValueError, match=match):
        AveragingOptions(**options)


@pytest.mark.parametrize("options,match", [
    (dict(time=25.0, batch=10.0), "time=25.0 must be a multiple of batch=10.0"),
    (dict(time=10.0, batch=20.0), "time=10.0 must be a multiple of batch=20.0"),
    (dict(dt=0.03, time=10.0, batch=5.0), "not a multiple of dt=0.03"),
    (dict(fast_step=ms.FastStep.EXACT_OU), "EXACT_OU"),
])
def test_fit_rejects_inconsistent_options(options, match):
    base = dict(dt=0.05, burn_in=1.0, time=10.0, replicas=2, batch=5.0)
    est = AveragingEstimator(AveragingOptions(**{**base, **options}))
    with pytest.raises(ValueError, match=match):
        est.fit("tilted_double_well" if "fast_step" in options else "fast_ou_linear", [0.0])


@pytest.mark.parametrize("kwargs,match", [
    (dict(seed=-1), "seed=-1"),
    (dict(seed=1.5), "seed=1.5"),
    (dict(threads=0), "threads=0"),
    (dict(device="tpu"), "device='tpu'"),
])
def test_estimator_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        AveragingEstimator(AveragingOptions(), **kwargs)


@pytest.mark.no_cuda
def test_cuda_unavailable_raises():
    with pytest.raises(ms.DeviceUnavailableError, match="cuda"):
        AveragingEstimator(AveragingOptions(), device="cuda")


# ----------------------------------------------------------------------------------------------
# CUDA
# ----------------------------------------------------------------------------------------------

@pytest.mark.cuda
@pytest.mark.parametrize("model,x,params,options", [
    ("fast_ou_linear", np.linspace(-2, 2, 7), None, dict(dt=0.05, burn_in=2.0, time=40.0, replicas=16, batch=10.0)),
    ("fast_ou_quadratic", np.linspace(-2, 2, 7), None,
     dict(dt=0.1, burn_in=2.0, time=40.0, replicas=16, batch=10.0, fast_step=ms.FastStep.EULER)),
    ("tilted_double_well", np.linspace(-2, 2, 7), None,
     dict(dt=0.01, burn_in=2.0, time=20.0, replicas=16, batch=5.0, target_stderr=0.05)),
    ("fast_ou_noise", X4, None, dict(dt=0.05, burn_in=2.0, time=40.0, replicas=16, batch=10.0)),
    ("lorenz96", X_L96, dict(K=4, J=8, h=1.0, b=10.0, c=4.0, F=10.0, sigma_y=0.5),
     dict(dt=0.001, burn_in=0.5, time=2.0, replicas=8, batch=0.5)),
])
def test_cuda_matches_cpu(model, x, params, options):
    cpu = fit(model, x, params=params, seed=5, **options)
    gpu = fit(model, x, params=params, seed=5, device="cuda", **options)
    assert gpu.attrs["device"] == "cuda"
    for v in ["F", "F_stderr", "A", "A_stderr"] + (["F_corrector"] if model == "fast_ou_noise" else []):
        np.testing.assert_allclose(gpu[v].values, cpu[v].values, rtol=1e-12, atol=1e-12, err_msg=v)
    np.testing.assert_array_equal(gpu.averaging_time.values, cpu.averaging_time.values)
    np.testing.assert_array_equal(gpu.converged.values, cpu.converged.values)


def test_replicas_of_deterministic_fast_dynamics_are_distinct():
    """Noiseless Lorenz-96: replicas start from distinct perturbations of y0, so the standard
    error reflects the chaotic fast dynamics instead of R identical copies."""
    params = {"K": 4, "J": 4, "c": 4.0, "b": 4.0}
    x = np.array([[2.0, 4.0, 6.0, 8.0]])
    opts = dict(dt=0.002, burn_in=2.0, time=4.0, batch=1.0)
    r16 = AveragingEstimator(AveragingOptions(replicas=16, **opts), seed=1).fit("lorenz96", x, params=params).result_
    r1 = AveragingEstimator(AveragingOptions(replicas=1, **opts), seed=1).fit("lorenz96", x, params=params).result_
    assert not np.array_equal(r16["F"].values, r1["F"].values)
    assert np.all(r16["F_stderr"].values > 0)


def test_failed_replica_with_overflowed_sums_is_left_out():
    """Explicit Euler on the fast double well at dtau = 0.2 blows up in some replicas (their sums
    overflow before the state turns non-finite); those replicas are left out of the estimate, the
    point is flagged unconverged, and nothing turns into NaN or warns."""
    import warnings

    opts = AveragingOptions(dt=0.2, burn_in=0.0, time=200.0, batch=10.0, replicas=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        r = AveragingEstimator(opts, seed=0).fit("tilted_double_well", [0.0, 0.5, 1.0, 1.5, 2.0]).result_
    n_ok = r["n_replicas_ok"].values
    assert np.any((n_ok > 1) & (n_ok < 16))  # partial failures happened at some point
    assert np.all(np.isfinite(r["F"].values[n_ok > 0]))
    assert np.all(r["converged"].values[n_ok < 16] == 0)
    status = r["replica_status"].values
    assert np.array_equal((status == 0).sum(axis=1), n_ok)


def test_lorenz96_closure_variable():
    """The closure output is F minus the resolved Lorenz-96 tendency; with h = 0 it vanishes."""
    x = np.array([[1.0, 3.0, -2.0, 5.0], [4.0, 4.0, 4.0, 4.0]])
    opts = AveragingOptions(dt=0.002, burn_in=1.0, time=2.0, batch=0.5, replicas=4)
    for h in (0.0, 1.0):
        params = {"K": 4, "J": 4, "c": 4.0, "b": 4.0, "h": h, "sigma_y": 0.5}
        r = AveragingEstimator(opts, seed=2).fit("lorenz96", x, params=params).result_
        resolved = -np.roll(x, 1, 1) * (np.roll(x, 2, 1) - np.roll(x, -1, 1)) - x + 20.0
        np.testing.assert_allclose(r["closure"].values, r["F"].values - resolved, rtol=0, atol=1e-12)
        if h == 0.0:
            np.testing.assert_allclose(r["closure"].values, 0.0, atol=1e-10)
        else:
            assert np.all(np.abs(r["closure"].values) > 4 * r["F_stderr"].values)
