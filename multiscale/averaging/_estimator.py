"""Averaged drift and effective diffusion by the heterogeneous multiscale method's micro-solver.

For each slow point x_i, R replicas of the fast process run with x frozen; the compiled kernel
(``csrc/include/multiscale/estimators/frozen_average.h``) streams the time averages, batch
means and block integrals, storing no fast trajectory. This module turns those per-replica
sums into estimates with standard errors.
"""
from __future__ import annotations

import json
from typing import Any, Mapping

import numpy as np
import xarray as xr

from .. import _core
from .._checks import integer, positive_finite
from .._checks import seed as check_seed
from .._device import build_info, parse_device
from .._status import STATUS_MEANINGS, Status  # the registries: status.h and rng/streams.h
from .._streams import Stream
from ..models import ModelInfo, Scaling, get_model
from ..simulate._grid import steps_of
from ..simulate._options import FastStep
from ._options import AveragingOptions

_MIN_BATCHES = 8


def _points(x_points: Any, m: int) -> np.ndarray:
    try:
        x = np.asarray(x_points, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"x_points={x_points!r} is not numeric") from None
    if x.ndim == 1 and m == 1:
        x = x[:, None]
    elif x.ndim == 1 and x.shape[0] == m:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != m:
        raise ValueError(f"x_points has shape {np.shape(x_points)}; expected (n_points, {m})"
                         + (" or (n_points,)" if m == 1 else ""))
    if x.shape[0] == 0:
        raise ValueError("x_points is empty")
    if not np.all(np.isfinite(x)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(x))[0])
        raise ValueError(f"x_points contains a non-finite value at index {bad}")
    return np.ascontiguousarray(x)


class AveragingEstimator:
    """Estimate the averaged drift ``F(x)`` and the effective diffusion ``A(x)`` at slow points.

    Averaging scaling: ``F = E_rho_x[f]``, ``A = E_rho_x[alpha alpha^T]``.
    Homogenization: ``F = E[f1] + E[(grad_x Phi) f0]`` and
    ``A = E[alpha alpha^T] + 2 int_0^inf E[f0(x,Y_0) (x) f0(x,Y_t)] dt`` (Green-Kubo), the fast
    time integral in fast-time units, so that ``A`` is the diffusion of the homogenized SDE in
    slow time.

    Parameters
    ----------
    options : AveragingOptions
    seed : int
        Noise is a function of (seed, point index * replicas + replica, step).
    device : {"cpu", "cuda", "cuda:N"}
    threads : int, optional

    Examples
    --------
    >>> est = AveragingEstimator(AveragingOptions(time=100.0)).fit("fast_ou_linear", np.linspace(-2, 2, 9))
    >>> est.result_.F          # (point, slow)
    """

    def __init__(self, options: AveragingOptions | None = None, *, seed: int = 0, device: str = "cpu",
                 threads: int | None = None) -> None:
        self.options = options if options is not None else AveragingOptions()
        if not isinstance(self.options, AveragingOptions):
            raise ValueError(f"options={options!r} must be a multiscale.AveragingOptions")
        self.seed = check_seed("seed", seed)
        self.device = device
        self._dev = parse_device(device)
        self.threads = 0 if threads is None else integer("threads", threads, 1)
        self.result_: xr.Dataset | None = None

    # ------------------------------------------------------------------------------------------
    def fit(self, model: str | ModelInfo, x_points: Any, *, params: Mapping[str, float] | None = None,
            eps: float | None = None, y0: Any = None) -> "AveragingEstimator":
        """Run the micro-solver at every slow point; returns ``self`` (result in ``result_``).

        Parameters
        ----------
        model : str or ModelInfo
            A catalogue model with explicit fast variables.
        x_points : array (n_points, m) or (n_points,) for m = 1
            Slow states at which to estimate.
        params : dict, optional
        eps : float, optional
            Only for models whose functions use eps; the frozen fast process is otherwise
            independent of it.
        y0 : array (n,), optional
            Initial fast state (default: the model's); burn-in removes its influence.
        """
        o = self.options
        info = get_model(model)
        p = info.resolve_params(params)
        m, n = info.dims(p)
        if n == 0:
            raise ValueError(
                f"model {info.name!r} has no explicit fast variables to average over; its effective "
                "dynamics must be learned from coarse trajectories instead")
        homog = info.scaling is Scaling.HOMOGENIZATION
        if eps is not None and not info.uses_eps:
            raise ValueError(f"eps={eps!r} given, but model {info.name!r} does not use eps")
        eps_v = positive_finite("eps", eps if eps is not None else (info.default_eps or 1.0))
        if o.fast_step is FastStep.EXACT_OU and not info.exact_ou:
            raise ValueError(f"fast_step=EXACT_OU: model {info.name!r} has no linear fast drift")
        exact_ou = info.exact_ou and o.fast_step is not FastStep.EULER
        x = _points(x_points, m)
        M, R = x.shape[0], o.replicas
        n_paths = M * R
        if n_paths > 2**32:
            raise ValueError(f"n_points * replicas = {n_paths} exceeds 2**32")
        batch_len = steps_of(o.batch, o.dt, "AveragingOptions.batch")
        round_steps = steps_of(o.time, o.dt, "AveragingOptions.time")
        if batch_len < 1 or round_steps % batch_len:
            raise ValueError(f"AveragingOptions time={o.time!r} must be a multiple of batch={o.batch!r}")
        burn = steps_of(o.burn_in, o.dt, "AveragingOptions.burn_in")
        max_time = o.max_time if o.max_time is not None else 20 * o.time
        max_rounds = max(1, int(max_time / o.time + 1e-9)) if o.target_stderr is not None else 1

        pvec = np.asarray([p[k] for k in info.param_names], float)
        corrector = homog and o.corrector
        core = info.core or _core  # a user model brings its own compiled module
        acc_size, state_size = core.frozen_sizes(model_id=info.id, params=pvec, eps=eps_v, corrector=corrector)
        _, dy = info.default_initial(p)
        if y0 is not None:
            dy = np.asarray(y0, float)
            if dy.shape != (n,) or not np.all(np.isfinite(dy)):
                raise ValueError(f"y0 must be {n} finite values, got {y0!r}")
        # Each replica starts at y0 plus a 1e-3 N(0, 1) perturbation keyed by (seed, path): it
        # makes replicas of deterministic (chaotic) fast dynamics distinct; for stochastic fast
        # dynamics the burn-in forgets it anyway.
        y_init = dy[None, :] + 1e-3 * _core.normals(seed=self.seed, path0=0, n_paths=n_paths, step=0, n=n,
                                                    single=False, stream=Stream.INITIAL)
        ystate = np.ascontiguousarray(np.tile(y_init, (1, state_size // n)))
        acc = np.zeros((n_paths, acc_size))
        done = np.zeros(n_paths, np.int64)
        status = np.zeros(n_paths, np.int8)
        fail = np.full(n_paths, -1, np.int64)
        active = np.ones(M, np.uint8)
        rounds = np.zeros(M, np.int64)
        stats: dict[str, np.ndarray] = {}
        for r in range(max_rounds):
            core.frozen_average_float64(
                model_id=info.id, params=pvec, eps=eps_v, x_points=x, active=active, replicas=R,
                seed=self.seed, dtau=o.dt, burn_steps=burn if r == 0 else 0, burn_total=burn,
                steps=round_steps, batch_len=batch_len, exact_ou=exact_ou, corrector=corrector,
                fd_step=o.fd_step, threads=self.threads, ystate=ystate, acc=acc, steps_done=done,
                status=status, fail_step=fail, device=self._dev)
            rounds += active
            stats = _reduce(acc, done, status, M, R, m, homog, corrector, batch_len, o.dt)
            if o.target_stderr is None:
                break
            se = stats["se_total"]
            worst = np.max(np.where(np.isnan(se), np.inf, se), axis=1)  # NaN: not converged
            active = (~(worst <= o.target_stderr)).astype(np.uint8)
            active[stats["n_ok"] == 0] = 0
            if not active.any():
                break
        self.result_ = _dataset(info, p, x, stats, rounds, o, homog, corrector, exact_ou, eps_v,
                                self.seed, self.device, status.reshape(M, R))
        return self

    def fetch_model(self):
        """The estimated averaged SDE (interpolating F and A) as an :class:`AveragedSDE`."""
        if self.result_ is None:
            raise RuntimeError("call fit() first")
        from ._macro import AveragedSDE

        return AveragedSDE(self.result_)


def _reduce(acc: np.ndarray, done: np.ndarray, status: np.ndarray, M: int, R: int, m: int,
            homog: bool, corrector: bool, batch_len: int, dt: float) -> dict[str, np.ndarray]:
    """Per-point estimates and standard errors from the per-replica sums of the kernel.

    Replicas are independent; batches within a replica are nearly so when the batch is much
    longer than the correlation time (checked through tau_int). Sums over replicas are NumPy
    reductions of fixed shape and order, hence reproducible. Failed replicas are left out.
    """
    ok = (status == Status.OK).reshape(M, R)
    # np.where, not multiplication: a failed replica's sums may hold inf (inf * 0 = NaN).
    A = np.where(ok[:, :, None], acc.reshape(M, R, -1), 0.0)
    steps = done.reshape(M, R) * ok
    N = steps.sum(axis=1).astype(float)
    nb = (steps // batch_len).sum(axis=1).astype(float)
    T_b = batch_len * dt
    cursor = 0

    def take_r(k: int) -> np.ndarray:
        """The next k accumulators per replica, shape (M, R, k)."""
        nonlocal cursor
        v = A[:, :, cursor:cursor + k]
        cursor += k
        return v

    def take(k: int) -> np.ndarray:
        return take_r(k).sum(axis=1)

    sum_f, sumsq_f, sum_a2 = take(m), take(m), take(m)
    take(m)  # partial batch sum: empty at the end of a call
    bm_sum, bm_sumsq = take(m), take(m)
    out: dict[str, np.ndarray] = {"n_ok": ok.sum(axis=1), "n_batches": nb, "steps": N}
    with np.errstate(invalid="ignore", divide="ignore"):
        Nc, nbc = N[:, None], nb[:, None]
        F_avg = sum_f / Nc
        var_pt = np.maximum(sumsq_f / Nc - F_avg**2, 0.0)
        bm_mean = bm_sum / nbc
        var_bm = np.maximum(bm_sumsq - nbc * bm_mean**2, 0.0) / (nbc - 1)
        se_avg = np.sqrt(var_bm / nbc)
        out["tau_int"] = np.where(var_pt > 0, T_b * var_bm / (2 * var_pt), 0.0)
        A_alpha = np.zeros((M, m, m))
        idx = np.arange(m)
        A_alpha[:, idx, idx] = sum_a2 / Nc
        A_se = np.zeros((M, m, m))
        F, F_se = F_avg, se_avg
        if homog:
            take(m)  # sum of f0 (its mean is ~0 by the centering condition)
            take(m)  # partial block integral
            I_r = take_r(m)
            Io_r = take_r(m * m).reshape(M, R, m, m)
            take_r(m)  # last unpaired block
            J_r = take_r(m)
            Jo_r = take_r(m * m).reshape(M, R, m, m)
            nb_r = (steps // batch_len).astype(float)
            np_r = nb_r // 2

            def gk(I, Io, J, Jo, nbv, npv):
                # Var(I_T)/T = D - 2c/T + o(1/T): 2 D(2T) - D(T) cancels the 1/T term.
                def cov(s_, o_, n_):
                    mu = s_ / n_[..., None]
                    return (o_ - n_[..., None, None] * mu[..., :, None] * mu[..., None, :]) / (n_[..., None, None] - 1)
                D_ = 2 * cov(J, Jo, npv) / (2 * T_b) - cov(I, Io, nbv) / T_b
                return 0.5 * (D_ + np.swapaxes(D_, -1, -2))

            D = gk(I_r.sum(1), Io_r.sum(1), J_r.sum(1), Jo_r.sum(1), nb, np_r.sum(1))
            # Delete-one-replica jackknife over the replicas that did not fail.
            D_loo = gk(I_r.sum(1, keepdims=True) - I_r, Io_r.sum(1, keepdims=True) - Io_r,
                       J_r.sum(1, keepdims=True) - J_r, Jo_r.sum(1, keepdims=True) - Jo_r,
                       nb[:, None] - nb_r, np_r.sum(1, keepdims=True) - np_r)
            k_ok = ok.sum(axis=1).astype(float)[:, None, None]
            wk = ok[:, :, None, None]
            D_loo = np.where(wk, D_loo, 0.0)
            mean_loo = D_loo.sum(1) / k_ok
            A_se = np.sqrt((k_ok - 1) / k_ok * (np.where(wk, D_loo - mean_loo[:, None], 0.0) ** 2).sum(1))
            A_se = np.where(k_ok >= 2, A_se, np.nan)  # a jackknife needs two replicas
            out["A_green_kubo"] = D
            out["F_f1"], out["F_f1_stderr"] = F_avg, se_avg
            if corrector:
                take(m)  # corrector weights of the open block
                take(m * m)  # open block integrals
                c_sum, c_sumsq = take(m), take(m)
                corr = c_sum / nbc
                se_c = np.sqrt(np.maximum(c_sumsq - nbc * corr**2, 0.0) / (nbc - 1) / nbc)
                out["F_corrector"], out["F_corrector_stderr"] = corr, se_c
                F = F_avg + corr
                F_se = np.sqrt(se_avg**2 + se_c**2)
            A_total = A_alpha + D
        else:
            A_total = A_alpha
    assert cursor == acc.shape[1], "accumulator layout out of sync with the kernel"
    out.update(F=F, F_stderr=F_se, A=A_total, A_stderr=A_se, A_alpha=A_alpha)
    out["se_total"] = np.concatenate([F_se, np.diagonal(A_se, axis1=1, axis2=2)], axis=1)
    return out


def _dataset(info: ModelInfo, p: dict, x: np.ndarray, st: dict, rounds: np.ndarray,
             o: AveragingOptions, homog: bool, corrector: bool, exact_ou: bool, eps: float,
             seed: int, device: str, status: np.ndarray) -> xr.Dataset:
    M, m = x.shape
    slow, _ = info.state_names(p)
    tau = st["tau_int"]
    converged = (st["n_ok"] == o.replicas) & (st["n_batches"] >= _MIN_BATCHES) \
        & np.all(~(tau * 5 > o.batch), axis=1)
    if o.target_stderr is not None:
        converged &= np.all(st["se_total"] <= o.target_stderr, axis=1)
    unit = {Scaling.AVERAGING: "t/eps", Scaling.HOMOGENIZATION: "t/eps^2"}.get(info.scaling, "t")
    pv = ("point", "slow")
    pm = ("point", "slow", "slow_j")
    data: dict[str, Any] = {
        "F": (pv, st["F"], {"long_name": "averaged (effective) drift", "units": "slow units / time"}),
        "F_stderr": (pv, st["F_stderr"], {"long_name": "standard error of F (batch means)"}),
        "A": (pm, st["A"], {"long_name": "effective diffusion matrix (quadratic variation rate)",
                            "units": "slow units^2 / time"}),
        "A_stderr": (pm, st["A_stderr"], {"long_name": "standard error of A: delete-one-replica "
                                          "jackknife of the Green-Kubo part (the alpha alpha^T average "
                                          "is exact for additive noise)"}),
        "A_alpha": (pm, st["A_alpha"], {"long_name": "E[alpha alpha^T] part of A"}),
        "tau_int": (pv, tau, {"long_name": "integrated autocorrelation time of the averaged slow drift",
                              "units": f"fast time ({unit})"}),
        "converged": (("point",), converged.astype(np.int8),
                      {"long_name": "1 if every accuracy check passed (no failed replica, >= 8 "
                       "batches, batch >= 5 tau_int, stderr <= target when set)"}),
        "averaging_time": (("point",), rounds * o.time,
                           {"long_name": "averaging time per replica", "units": f"fast time ({unit})"}),
        "n_replicas_ok": (("point",), st["n_ok"], {"long_name": "replicas that did not fail"}),
        "replica_status": (("point", "replica"), status, {"long_name": "per-replica status (0 OK)",
                                                          "flag_meanings": " ".join(STATUS_MEANINGS)}),
    }
    if homog:
        data["F_f1"] = (pv, st["F_f1"], {"long_name": "E[f1]"})
        data["A_green_kubo"] = (pm, st["A_green_kubo"], {
            "long_name": "2 int_0^inf E[f0 (x) f0] dt (symmetrised), block covariances at block "
                         "lengths T and 2T extrapolated to remove the O(1/T) bias"})
        if corrector:
            data["F_corrector"] = (pv, st["F_corrector"], {"long_name": "E[(grad_x Phi) f0]"})
            data["F_corrector_stderr"] = (pv, st["F_corrector_stderr"], {})
    if info.name == "lorenz96":
        # The closure of X_k given all slow variables frozen: the averaged drift minus the
        # resolved tendency -X_{k-1}(X_{k-2} - X_{k+1}) - X_k + F, i.e. -(h c/b) E[sum_j Y_jk].
        resolved = (-np.roll(x, 1, axis=1) * (np.roll(x, 2, axis=1) - np.roll(x, -1, axis=1))
                    - x + p["F"])
        data["closure"] = (pv, st["F"] - resolved, {
            "long_name": "Lorenz-96 closure -(h c/b) E[sum_j Y_jk] given the frozen slow state "
                         "(standard error: F_stderr)"})
    bi = build_info()
    attrs = {
        "title": f"averaged dynamics of {info.name}",
        "model": info.name, "scaling": info.scaling.value, "params_json": json.dumps(p),
        "eps": eps if info.uses_eps else float("nan"),
        "options_json": json.dumps({k: (v.value if isinstance(v, FastStep) else v)
                                    for k, v in o.__dict__.items()}),
        "fast_step": "exact_ou" if exact_ou else "euler", "corrector": int(corrector),
        "seed": str(seed), "rng": "Philox4x32-10", "rng_stream": int(Stream.FROZEN), "device": device,
        "package": "multiscale", "package_version": bi["version"], "build_info_json": json.dumps(bi),
    }
    coords = {"point": np.arange(M), "slow": slow, "slow_j": slow, "replica": np.arange(o.replicas),
              "x": (pv, x, {"long_name": "frozen slow state"})}
    return xr.Dataset(data, coords=coords, attrs=attrs)
