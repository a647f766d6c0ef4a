"""Validation of many slow variables (issue 18): the ring statistics against the exact values of a
linear Gaussian ring, first passage along a linear reaction coordinate in two dimensions against
the exact 1-D answer, and ``validate`` end to end on a small linear ring (report, figure and
dataset; its checks pass for the true model and fail for a wrong one).

The fast tests draw linear Gaussian paths by the exact discretisation (no compiled model); the
slow ones run the same ring, written in the model language, in the compiled kernels."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.linalg
import xarray as xr

import multiscale as ms
from multiscale.validate import (RingValidationSettings, compare_ring, linear_gaussian_statistics, mfpt,
                                 reaction_coordinate_mfpt, ring_statistics, transition_statistics, validate)

K = 6
EPS = 0.01
PARAMS = {"K": K, "a": 2.0, "b": 0.4, "c": 0.5, "s": 1.0, "F": 1.0}


def _ring_model() -> ms.Model:
    """Slow ring ``dX_k = (F - a X_k + b (X_{k-1} + X_{k+1}) + c Y_k) dt + s dW`` with fast OU
    ``dY_k = -(Y_k - X_{k+1})/eps dt + sqrt(2/eps) dV``: linear and Gaussian; the averaged slow
    ring has the drift ``F - a X_k + b (X_{k-1} + X_{k+1}) + c X_{k+1}`` and the noise variance
    ``s^2 + 2 c^2 eps``."""
    return ms.Model("ring_lin_ou", slow={"X[k]": "F - a*X[k] + b*(X[k-1] + X[k+1]) + c*Y[k]"},
                    fast={"Y[k]": "-(Y[k] - X[k+1])"}, slow_noise={"X": "s"}, fast_noise={"Y": "sqrt(2)"},
                    sizes={"X": "K", "Y": "K"}, params=PARAMS, scaling="averaging", default_eps=EPS)


def _full_matrices(c: float = PARAMS["c"]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``dZ = (f - M Z) dt + S dW`` of the full ring ``Z = (X, Y)``: M, Sigma = S S^T, f."""
    a, b, s, F = PARAMS["a"], PARAMS["b"], PARAMS["s"], PARAMS["F"]
    M, Sig, f = np.zeros((2 * K, 2 * K)), np.zeros((2 * K, 2 * K)), np.zeros(2 * K)
    for k in range(K):
        M[k, k], M[k, (k - 1) % K], M[k, (k + 1) % K], M[k, K + k] = a, -b, -b, -c
        f[k], Sig[k, k] = F, s * s
        M[K + k, K + k], M[K + k, (k + 1) % K], Sig[K + k, K + k] = 1 / EPS, -1 / EPS, 2 / EPS
    return M, Sig, f


def _averaged_matrices(c: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The averaged slow ring with coupling ``c`` (``c = PARAMS["c"]``: the exact limit)."""
    a, b, s, F = PARAMS["a"], PARAMS["b"], PARAMS["s"], PARAMS["F"]
    M = a * np.eye(K)
    for k in range(K):
        M[k, (k - 1) % K] -= b
        M[k, (k + 1) % K] -= b + c
    return M, (s * s + 2 * c * c * EPS) * np.eye(K), np.full(K, F)


def _exact_paths(M: np.ndarray, Sig: np.ndarray, f: np.ndarray, x0: np.ndarray, h: float, n: int,
                 seed: int) -> np.ndarray:
    """Paths of ``dZ = (f - M Z) dt + S dW`` at ``n + 1`` times ``0, h, ..`` from ``x0 (P, dim)`` by
    the exact transition ``Z(t+h) = mu + E (Z(t) - mu) + N(0, C - E C E^T)``."""
    C = scipy.linalg.solve_continuous_lyapunov(M, Sig)
    mu = np.linalg.solve(M, f)
    E = scipy.linalg.expm(-M * h)
    L = np.linalg.cholesky(C - E @ C @ E.T + 1e-14 * np.eye(len(f)))
    rng = np.random.default_rng(seed)
    z = np.array(x0, float)
    out = [z]
    for _ in range(n):
        z = mu + (z - mu) @ E.T + rng.standard_normal(z.shape) @ L.T
        out.append(z)
    return np.stack(out, 1)


def _stationary_full(P: int, T: int, h: float, seed: int) -> np.ndarray:
    """``P`` stationary paths of the full ring ``(P, T, 2K)``, sampled every ``h``."""
    M, Sig, f = _full_matrices()
    C = scipy.linalg.solve_continuous_lyapunov(M, Sig)
    rng = np.random.default_rng(seed + 1000)
    z0 = np.linalg.solve(M, f) + rng.standard_normal((P, 2 * K)) @ np.linalg.cholesky(C).T
    return _exact_paths(M, Sig, f, z0, h, T - 1, seed)


class _LinearRing:
    """A surrogate-like linear slow ring (the averaged ring with coupling ``c``), simulated by the
    exact discretisation at the sampling interval: ``simulate(...) -> (paths, saves, K)``."""

    members = 1

    def __init__(self, c: float) -> None:
        self.M, self.Sig, self.f = _averaged_matrices(c)
        self.dim = K

    def simulate(self, *, t_end: float, dt: float, x0, seed: int = 0, member=None, save_every: int = 1) -> np.ndarray:
        h = dt * save_every
        return _exact_paths(self.M, self.Sig, self.f, np.asarray(x0, float), h, int(round(t_end / h)), seed)


def _reference_dataset(P: int, T: int, h: float, seed: int) -> xr.Dataset:
    """Full-ring paths as :func:`multiscale.simulate` writes them (slow states named)."""
    z = _stationary_full(P, T, h, seed)
    names = [f"X[{k}]" for k in range(K)] + [f"Y[{k}]" for k in range(K)]
    return xr.Dataset({"trajectory": (("realization", "time", "state"), z)},
                      coords={"realization": np.arange(P), "time": h * np.arange(T), "state": names},
                      attrs={"slow_states_json": json.dumps(names[:K]), "params_json": json.dumps(PARAMS),
                             "eps": EPS})


LAGS = np.array([0.0, 0.1, 0.2, 0.5, 1.0, 2.0])


def _z_scores(st, exact: dict) -> dict:
    """|estimate - exact| / standard error per statistic (entries with a zero error skipped: the
    ACF at lag 0 is 1 exactly)."""
    out = {}
    for key in ("pooled_mean", "pooled_var", "acf", "ccf", "spatial", "mean", "var"):
        est, se, ex = (np.atleast_1d(np.asarray(v, float)) for v in (getattr(st, key), st.se[key], exact[key]))
        ok = se > 1e-12
        out[key] = np.abs(est[ok] - ex[ok]) / se[ok]
    return out


# ---------------------------------------------------------------------------------- (a) statistics
def test_ring_statistics_agree_with_the_exact_linear_gaussian_ring_and_flag_a_wrong_one():
    """Full linear ring (slow X with fast OU Y) drawn exactly: every m > 1 statistic agrees with the
    exact Lyapunov/expm values within 4 bootstrap errors (29 values; over 8 seeds the z-scores had
    rms 1.05, so the errors are calibrated); the averaged ring with a wrong coupling is flagged by
    compare_ring's checks and the exact limit is not."""
    h = 0.05
    z = _stationary_full(24, 3000, h, seed=100)
    x = z[..., :K]
    M, Sig, f = _full_matrices()
    exact = linear_gaussian_statistics(M, Sig, LAGS, forcing=f, observed=np.arange(K))
    st = ring_statistics(x, h, LAGS, n_boot=200, seed=1)
    z_scores = _z_scores(st, exact)
    assert max(float(v.max()) for v in z_scores.values()) < 4, z_scores
    # the bootstrap errors are the right size: the z-scores are not all tiny
    assert np.median(np.concatenate(list(z_scores.values()))) > 0.2

    x0 = x[:, 0]
    right = _LinearRing(PARAMS["c"]).simulate(t_end=150.0, dt=h, x0=x0, seed=5)[:, 20:]
    wrong = _LinearRing(0.2).simulate(t_end=150.0, dt=h, x0=x0, seed=6)[:, 20:]
    ref, rows, edges, counts = compare_ring(x, {"right": right, "wrong": wrong}, h, max_lag=2.0, bins=30,
                                            n_boot=100)
    assert rows[0].checks == {"mean": True, "std": True, "acf": True, "ccf0": True, "density": True}
    assert not rows[1].checks["mean"] and not rows[1].checks["ccf0"] and not rows[1].checks["density"]
    # the density's noise floor is a real floor (not zero)
    assert 0 < rows[0].density["tv"].noise_floor < 0.2 and rows[1].density["tv"].estimate > rows[1].density["tv"].noise_floor
    for kind in ("tv", "hellinger", "kl", "w1"):
        assert rows[0].density[kind].consistent_with_zero, kind
    # with the exact statistics as the reference the wrong ring's mean is flagged too
    _, rows_ex, _, _ = compare_ring(x, {"wrong": wrong}, h, max_lag=2.0, exact=linear_gaussian_statistics(
        *_averaged_matrices(PARAMS["c"])[:2], ref.lags, forcing=_averaged_matrices(PARAMS["c"])[2]))
    assert not rows_ex[0].checks["mean"]


@pytest.mark.slow
def test_ring_statistics_of_the_compiled_linear_ring_match_the_exact_values():
    """The same statistics of the ring written in the model language and run in the compiled
    kernels (Euler-Maruyama, dt = 1e-3: a bias of order dt, far below the errors) against the exact
    values (|z| < 4); the averaged ring with another coupling is more than 4 errors away."""
    ds = ms.simulate(_ring_model(), eps=EPS, dt=1e-3, t_end=152.0, n_paths=24, seed=2, save_every=50)
    x = ds.trajectory.values[:, 40:, :K]  # after 2 time units
    M, Sig, f = _full_matrices()
    exact = linear_gaussian_statistics(M, Sig, LAGS, forcing=f, observed=np.arange(K))
    st = ring_statistics(x, 0.05, LAGS)
    assert max(float(v.max()) for v in _z_scores(st, exact).values()) < 4
    wrong = linear_gaussian_statistics(*_averaged_matrices(0.2)[:2], LAGS, forcing=_averaged_matrices(0.2)[2])
    assert max(float(v.max()) for v in _z_scores(st, wrong).values()) > 4


# --------------------------------------------------------------- (b) first passage along q = w . X
def _double_well(T: float):
    """``V = V1(q) + p^2 / 2`` with ``q = (x1 + x2)/sqrt2``, ``p = (x1 - x2)/sqrt2``,
    ``V1 = (q^2 - 1)^2``, ``dX = -grad V dt + sqrt(2 T) dW``: ``q`` is exactly the 1-D diffusion
    ``dq = -V1'(q) dt + sqrt(2 T) dW``."""
    drift_q = lambda q: -4 * q * (q * q - 1)  # noqa: E731
    return drift_q, (lambda q: np.full_like(np.asarray(q, float), 2 * T))


def test_transitions_along_a_linear_reaction_coordinate_match_the_exact_1d_mfpt():
    """Trajectory estimate of the MFPT of q from q <= a to q >= b (and back) in the 2-D gradient
    system against the exact 1-D quadrature (the entrance into {q <= a} is at q = a): within 4
    bootstrap errors plus 3% for the Euler step and the sampling interval."""
    T, dt, every, a, b = 0.4, 2e-3, 5, -0.6, 0.6
    drift_q, diff_q = _double_well(T)
    rng = np.random.default_rng(7)
    P, n = 256, 50000  # 100 time units per path
    x = np.tile([-1 / math.sqrt(2), -1 / math.sqrt(2)], (P, 1)) + 0.1 * rng.standard_normal((P, 2))
    r2 = 1 / math.sqrt(2)
    q_saved = []
    for step in range(n):
        q, p = (x[:, 0] + x[:, 1]) * r2, (x[:, 0] - x[:, 1]) * r2
        g1 = -drift_q(q)  # V1'(q)
        grad = np.stack([(g1 + p) * r2, (g1 - p) * r2], 1)
        x = x - grad * dt + math.sqrt(2 * T * dt) * rng.standard_normal(x.shape)
        if step % every == 0:
            q_saved.append(x @ np.array([r2, r2]))
    tr = transition_statistics(np.stack(q_saved, 1), dt * every, a, b, seed=1)
    ex_ab = mfpt(drift_q, diff_q, a, b)
    ex_ba = mfpt(drift_q, diff_q, b, a)
    assert tr.n_ab > 200 and tr.n_ba > 200
    assert abs(tr.mfpt_ab - ex_ab) < 4 * tr.mfpt_ab_se + 0.03 * ex_ab, (tr, ex_ab)
    assert abs(tr.mfpt_ba - ex_ba) < 4 * tr.mfpt_ba_se + 0.03 * ex_ba, (tr, ex_ba)
    assert abs(tr.rate_ab * ex_ab - 1) < 0.1


@pytest.mark.slow
def test_first_passage_along_a_linear_reaction_coordinate_in_the_compiled_kernel():
    """The 2-D gradient system in the model language, MFPT of q from a to b by the compiled first
    passage code (Brownian-bridge crossing test) against the exact 1-D quadrature (95% interval
    plus 3% for the Euler step)."""
    T, a, b = 0.4, -0.6, 0.6
    # -dV/dx1,2 = -(V1'(q) +- p)/sqrt2 = -((x1 + x2)((x1 + x2)^2 - 2) +- (x1 - x2)/2)
    model = ms.Model("grad2", slow={"x1": "-((x1 + x2)*((x1 + x2)^2 - 2) + (x1 - x2)/2)",
                                    "x2": "-((x1 + x2)*((x1 + x2)^2 - 2) - (x1 - x2)/2)"},
                     slow_noise={"x1": "sqrt(2*T)", "x2": "sqrt(2*T)"}, params={"T": T}, scaling="none")
    w = np.array([1.0, 1.0]) / math.sqrt(2)
    res = reaction_coordinate_mfpt(model, weights=w, x0=a * w, target=b, dt=1e-3, n_paths=2000, max_time=500.0,
                                   seed=3)
    drift_q, diff_q = _double_well(T)
    exact = mfpt(drift_q, diff_q, a, b)
    assert abs(res.mean - exact) < 1.96 * res.stderr + 0.03 * exact, (res.mean, res.stderr, exact)


# ------------------------------------------------------------------------- (c) validate end to end
def _settings(**kw) -> RingValidationSettings:
    base = dict(n_paths=12, t_spinup=0.0, t_end=60.0, t_burn=1.0, sample_every=0.05, surrogate_dt=0.05, dt=1e-3,
                max_lag=3.0, check_lag=2.0, bins=30, n_boot=100)
    base.update(kw)
    return RingValidationSettings(**base)


def test_validate_on_a_small_ring_writes_its_outputs_and_passes_only_the_true_model(tmp_path):
    """``validate`` with the full ring's trajectories given (``reference=``): the exact averaged ring
    passes every check, the ring with a wrong coupling fails; report.md, validation.png and
    validation.nc hold the statistics of the full system, the surrogate and the baselines."""
    from multiscale.surrogate._baselines import PolynomialClosure

    ref = _reference_dataset(12, 1300, 0.05, seed=11)
    resolved = ms.Model("ring_resolved", slow={"X[k]": "F - a*X[k] + b*(X[k-1] + X[k+1])"}, slow_noise={"X": "0"},
                        sizes={"X": "K"}, params={k: PARAMS[k] for k in ("K", "a", "b", "F")}, scaling="none")
    true = _LinearRing(PARAMS["c"])
    true.resolved, true.resolved_params = resolved, None
    cubic = PolynomialClosure.fit(ref.trajectory.values[:, :, :K], 0.05, resolved, degree=1, noise=True)
    rep = validate(true, _ring_model(), settings=_settings(), reference=ref, out=tmp_path, progress=False,
                   baselines={"linear + AR(1)": cubic, "wrong coupling": _LinearRing(-0.5)},
                   reaction_coordinate=np.full(K, 1 / K), levels=(1.2, 1.7))
    assert rep.checks and all(k.startswith("surrogate: ") for k in rep.checks)
    assert rep.passed, rep.checks
    for name in ("report.md", "validation.png", "validation.nc"):
        assert (tmp_path / name).is_file()
    md = (tmp_path / "report.md").read_text()
    assert "No exact limit is known" in md and "wrong coupling" in md and "linear + AR(1)" in md
    assert "FAIL" in md  # the wrong baseline fails in the table
    ds = xr.open_dataset(tmp_path / "validation.nc", engine="h5netcdf")
    assert list(ds["candidate"].values) == ["full system", "surrogate", "linear + AR(1)", "wrong coupling"]
    for v in ("acf", "acf_se", "ccf", "ccf_se", "spatial", "spatial_se", "mean", "var", "density", "distance",
              "distance_noise_floor", "site_tv", "passed", "mfpt", "mfpt_se"):
        assert v in ds, v
    assert ds["passed"].sel(compared="wrong coupling").values.min() == 0
    assert np.all(ds["passed"].sel(compared="surrogate").values == 1)
    assert float(ds["lag"].max()) == pytest.approx(3.0)
    assert np.all(ds["mfpt"].sel(candidate="full system").values > 0)
    ds.close()

    bad = validate(_LinearRing(-0.5), _ring_model(), settings=_settings(), reference=ref, progress=False)
    assert not bad.passed
    assert not bad.checks["surrogate: mean of X_k within 2%"]


@pytest.mark.slow
def test_validate_simulates_the_full_ring_and_flags_an_untrained_local_closure(tmp_path):
    """``validate`` simulating the ring written in the model language (compiled kernels), with the
    true averaged ring as the surrogate (passes) and an untrained LocalEffectiveSDE (its compiled
    simulation; fails)."""
    pytest.importorskip("torch")
    from multiscale.surrogate._local import LocalEffectiveSDE

    s = _settings(n_paths=8, t_spinup=2.0, t_end=40.0, dt=2e-3, surrogate_dt=0.01)
    rep = validate(_LinearRing(PARAMS["c"]), _ring_model(), settings=s, out=tmp_path, progress=False)
    assert rep.passed, rep.checks
    assert (tmp_path / "validation.nc").is_file()
    net = LocalEffectiveSDE(K, stencil=1, members=2, hidden=(8,), seed=3)
    net.set_scaling(0.0, 1.0, 0.0, 0.1, 0.5)
    bad = validate(net, _ring_model(), settings=s, progress=False)
    assert not bad.passed


def test_validate_refuses_identical_reference_paths():
    """A deterministic system started from one state gives copies of one path: every bootstrap
    error would be zero, so validate refuses them instead of passing on no information."""
    ref = _reference_dataset(6, 200, 0.05, seed=1)
    ref["trajectory"].values[:] = ref["trajectory"].values[:1]
    with pytest.raises(ValueError, match="identical"):
        validate(_LinearRing(PARAMS["c"]), _ring_model(), settings=_settings(t_end=5.0, max_lag=1.0), reference=ref,
                 progress=False)


def test_a_surrogate_that_blows_up_fails_every_check_with_a_report(tmp_path):
    """A hybrid model whose resolved part explodes (dX_k = X_k^3 dt + ...): the compiled simulation
    stops those paths, validate writes a report and every check fails; nothing crashes."""
    pytest.importorskip("torch")
    from multiscale.surrogate._local import LocalEffectiveSDE

    ref = _reference_dataset(8, 400, 0.05, seed=12)
    explode = ms.Model("explode", slow={"X[k]": "X[k]^3"}, slow_noise={"X": "0"}, sizes={"X": "K"},
                       params={"K": K}, scaling="none")
    net = LocalEffectiveSDE(K, stencil=1, members=2, hidden=(4,), resolved=explode, seed=3)
    rep = validate(net, _ring_model(), settings=_settings(n_paths=8, t_end=15.0), reference=ref, out=tmp_path,
                   progress=False)
    assert rep.checks and not any(rep.checks.values())
    assert rep.checks["surrogate: every path stays finite"] is False
    assert "blew up" in (tmp_path / "report.md").read_text()


def test_bad_arguments_of_the_ring_statistics_name_the_value():
    x = np.random.default_rng(0).normal(size=(4, 50, K))
    with pytest.raises(ValueError, match="h=0"):
        ring_statistics(x, 0.0, np.array([0.0, 0.1]))
    with pytest.raises(ValueError, match="n_boot=1"):
        ring_statistics(x, 0.1, np.array([0.0, 0.1]), n_boot=1)
    with pytest.raises(ValueError, match="q must be finite"):
        transition_statistics(np.array([[0.0, np.nan, 1.0]]), 0.1, 0.2, 0.8)
    with pytest.raises(ValueError, match=r"exact\['acf'\] has shape"):
        compare_ring(x, {"c": x}, 0.1, max_lag=1.0, n_lags=5, exact={"pooled_mean": 0.0, "pooled_var": 1.0,
                                                                       "acf": np.ones(3), "ccf": np.ones(5)})
    for kw, match in ((dict(n_boot=1), "n_boot=1"), (dict(bins=True), "bins=True"), (dict(n_paths=2.5), "n_paths")):
        with pytest.raises(ValueError, match=match):
            _settings(**kw)
