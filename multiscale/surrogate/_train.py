"""Fitting :class:`EffectiveSDE` to averaged-drift estimates or to coarse slow trajectories."""
from __future__ import annotations

import contextlib
import copy
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import xarray as xr

from .._checks import positive_finite
from .._device import build_info
from .._errors import LagWarning, MultiscaleWarning, StateRolesWarning
from ._model import EffectiveSDE, member_moments
from ._options import SurrogateOptions, TrajectoryMethod


MAX_PAIRS = 2_000_000  # transition pairs kept in memory for the trajectories pathway


def _jsonable(options: SurrogateOptions) -> dict[str, Any]:
    return {k: (v.value if hasattr(v, "value") else (list(v) if isinstance(v, tuple) else v))
            for k, v in asdict(options).items()}


class _Progress:
    """A one-line progress bar on a terminal; a line every ~10% otherwise (no log flooding)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.enabled, self.total, self.label = enabled, max(total, 1), label
        self.tty = enabled and sys.stderr.isatty()
        self.next_pct = 0

    def update(self, i: int, text: str) -> None:
        if not self.enabled:
            return
        pct = int(100 * i / self.total)
        if self.tty:
            bar = "#" * (pct // 4)
            sys.stderr.write(f"\r{self.label} [{bar:<25}] {pct:3d}% {text}")
            sys.stderr.flush()
        elif pct >= self.next_pct:
            sys.stderr.write(f"{self.label} {pct:3d}% {text}\n")
            self.next_pct = pct + 10

    def close(self, text: str) -> None:
        if self.enabled:
            sys.stderr.write(("\r" if self.tty else "") + f"{self.label} done: {text}\n")


class EffectiveSDEEstimator:
    """Learn the effective SDE ``dX = b(X) dt + S(X) dW`` of the slow variables.

    Two data pathways behind one ``fit``:

    * **estimates** (an :class:`AveragingEstimator` result, with ``F``, ``A`` and their standard
      errors at slow points ``x``): weighted least squares, each point weighted by its standard
      error; with ``bootstrap`` each member fits its own parametric-bootstrap copy of the data.
    * **trajectories** (a :func:`multiscale.simulate` dataset, a netCDF/HDF5 file holding one,
      or an array ``(paths, times, m)`` with ``dt``): maximum likelihood of the transition
      density at lag ``lag`` (see :class:`TrajectoryMethod`), with a Poisson path bootstrap per
      member.

    Parameters
    ----------
    options : SurrogateOptions, optional

    Attributes
    ----------
    model_ : EffectiveSDE
        The fitted surrogate (also :meth:`fetch_model`).
    history_ : dict
        Per-epoch training and validation loss (summed over members).
    summary_ : dict
        Data source, sizes, lag, timings, final losses.
    lag_ : float or None
        Lag used for trajectories (time units).

    Examples
    --------
    >>> avg = AveragingEstimator(AveragingOptions(time=200.0)).fit("fast_ou_linear", np.linspace(-2.5, 2.5, 41))
    >>> sde = EffectiveSDEEstimator(SurrogateOptions(members=8)).fit(avg.result_).fetch_model()
    >>> sde.drift(np.array([0.5])), sde.drift_spread(np.array([0.5]))
    """

    def __init__(self, options: SurrogateOptions | None = None) -> None:
        self.options = options if options is not None else SurrogateOptions()
        if not isinstance(self.options, SurrogateOptions):
            raise ValueError(f"options={options!r} must be a multiscale.SurrogateOptions")

    # ------------------------------------------------------------------ dispatch
    def fit(self, data: Any, *, dt: float | None = None, lag: float | None = None,
            variables: Sequence[str] | None = None) -> "EffectiveSDEEstimator":
        """Fit to estimates or trajectories (detected from ``data``); returns ``self``.

        Parameters
        ----------
        data : xarray.Dataset, str, Path or ndarray
            An averaging result (variables ``F``, ``A``, coordinate ``x``), a simulation
            (variable ``trajectory (realization, time, state)``), a file holding either, or a
            trajectory array ``(paths, times, m)`` / ``(times, m)`` sampled every ``dt``.
        dt : float, optional
            Sampling interval of an array (taken from the dataset's ``time`` otherwise).
        lag : float, optional
            Transition lag for trajectories (a multiple of the sampling interval); default: the
            rule of :func:`choose_lag`.
        variables : sequence of str, optional
            Slow variables to model in a simulation dataset (default: the model's slow
            variables, or every saved state for an unknown model).
        """
        opts = self.options
        prev_threads = torch.get_num_threads()
        if opts.threads is not None:
            torch.set_num_threads(opts.threads)
        try:
            if isinstance(data, (str, os.PathLike)):
                path = Path(data)
                if not path.exists():
                    raise FileNotFoundError(f"data file {str(path)!r} does not exist")
                from ..io import open_dataset
                try:
                    ds = open_dataset(path)
                except Exception as err:
                    raise ValueError(f"could not read {str(path)!r} as a netCDF/HDF5 dataset: {err}") from None
                source = {"file": str(path.resolve())}
                return self._fit_dataset(ds, dt, lag, variables, source)
            if isinstance(data, xr.Dataset):
                return self._fit_dataset(data, dt, lag, variables, {"dataset": data.attrs.get("title", "")})
            if isinstance(data, (np.ndarray, list, tuple, torch.Tensor)):
                arr = np.asarray(data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else data,
                                 dtype=float)
                if dt is None:
                    raise ValueError("dt (the sampling interval of the trajectory array) is required")
                if variables is None:
                    m = arr.shape[-1] if arr.ndim >= 2 else 0
                    warnings.warn(f"the trajectory array does not say which states are slow; all {m} "
                                  f"columns are modelled as slow variables x0..x{max(m - 1, 0)} "
                                  "(pass variables=[...] to name them)", StateRolesWarning, stacklevel=2)
                names = tuple(variables) if variables is not None else None
                return self._fit_trajectories(arr, float(dt), lag, names, {"array": list(arr.shape)})
            raise ValueError(f"data of type {type(data).__name__} is not a dataset, file or array")
        finally:
            torch.set_num_threads(prev_threads)

    def fetch_model(self) -> EffectiveSDE:
        """The fitted :class:`EffectiveSDE`."""
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit(...) first")
        return self.model_

    def _fit_dataset(self, ds: xr.Dataset, dt, lag, variables, source) -> "EffectiveSDEEstimator":
        source = {**source, **{k: ds.attrs[k] for k in ("model", "params_json", "eps", "seed")
                               if k in ds.attrs}}
        if "F" in ds and "A" in ds and "x" in ds.coords:
            if lag is not None or dt is not None:
                raise ValueError("lag and dt apply to trajectories, not to averaged estimates")
            return self._fit_estimates(ds, source)
        if "trajectory" in ds:
            traj = ds["trajectory"]
            names = [str(n) for n in ds["state"].values]
            if variables is None:
                variables = _slow_names(ds, names)
            unknown = [v for v in variables if v not in names]
            if unknown:
                raise ValueError(f"variables {unknown} are not in the dataset's states {names}")
            arr = traj.sel(state=list(variables)).transpose("realization", "time", "state").values
            t = ds["time"].values
            if t.size < 3:
                raise ValueError(f"the trajectory has {t.size} saved times; at least 3 are needed")
            h = np.diff(t)
            if not np.allclose(h, h[0], rtol=1e-9, atol=0):
                raise ValueError("the trajectory is not sampled at equal time intervals")
            if dt is not None and not math.isclose(float(dt), float(h[0]), rel_tol=1e-9):
                raise ValueError(f"dt={dt!r} disagrees with the dataset's sampling interval {float(h[0])!r}")
            return self._fit_trajectories(arr, float(h[0]), lag, tuple(variables), source)
        raise ValueError("the dataset holds neither averaged estimates (F, A, x) nor a trajectory")

    # ------------------------------------------------------------------ estimates pathway
    def _fit_estimates(self, ds: xr.Dataset, source: dict) -> "EffectiveSDEEstimator":
        o = self.options
        x = np.asarray(ds["x"].values, float)
        F = np.asarray(ds["F"].values, float)
        A = np.asarray(ds["A"].values, float)
        Fse = np.asarray(ds["F_stderr"].values, float) if "F_stderr" in ds else np.zeros_like(F)
        Ase = np.asarray(ds["A_stderr"].values, float) if "A_stderr" in ds else np.zeros_like(A)
        if x.ndim != 2 or F.shape != x.shape or A.shape != x.shape + (x.shape[1],):
            raise ValueError(f"estimates have inconsistent shapes x {x.shape}, F {F.shape}, A {A.shape}")
        ok = np.all(np.isfinite(x), 1) & np.all(np.isfinite(F), 1) & np.all(np.isfinite(A), (1, 2))
        if "converged" in ds:
            ok &= ds["converged"].values.astype(bool)
        n_drop = int((~ok).sum())
        if ok.sum() < 4:
            raise ValueError(f"only {int(ok.sum())} usable points (finite, converged); at least 4 are needed")
        if n_drop:
            warnings.warn(f"{n_drop} of {ok.size} points are not finite or not converged and are left out",
                          MultiscaleWarning, stacklevel=3)
        x, F, A, Fse, Ase = x[ok], F[ok], A[ok], Fse[ok], Ase[ok]
        M, m = x.shape
        names = tuple(str(s) for s in ds["slow"].values) if "slow" in ds.coords else None
        model = self._new_model(m, names)
        diagA = np.diagonal(A, axis1=1, axis2=2)
        if np.any(diagA <= 0):
            raise ValueError("the estimated diffusion A has a non-positive diagonal entry")
        b_scale = np.maximum(F.std(0), 1e-3 * np.abs(F).max(0) + 1e-12)
        model.set_scaling(x.mean(0), np.maximum(x.std(0), 1e-12), F.mean(0), b_scale,
                          np.sqrt(diagA.mean(0)), x.min(0), x.max(0))
        # Standard errors with a floor: an exact or zero-error estimate must not get infinite weight.
        a_scale = diagA.mean()
        Fse = np.where(np.isfinite(Fse) & (Fse > 0), Fse, 0.0)
        Fse = np.maximum(Fse, 1e-3 * b_scale)
        Ase = np.where(np.isfinite(Ase) & (Ase > 0), Ase, 0.0)
        Ase = np.maximum(Ase, 1e-3 * a_scale)
        E = o.members
        rng = np.random.default_rng([o.seed, 1])
        Ft = np.broadcast_to(F, (E, M, m)).copy()
        At = np.broadcast_to(A, (E, M, m, m)).copy()
        if o.bootstrap:
            Ft += Fse * rng.standard_normal((E, M, m))
            noise = Ase * rng.standard_normal((E, M, m, m))
            At += 0.5 * (noise + np.swapaxes(noise, -1, -2))
        val = _split(rng, E, M, o.validation_fraction) if M >= 10 else np.zeros((E, M), bool)
        # Never hold out the outermost points: validating there would test extrapolation.
        val[:, np.unique(np.concatenate([x.argmin(0), x.argmax(0)]))] = False
        tx = torch.as_tensor(x)
        tF, tA = torch.as_tensor(Ft), torch.as_tensor(At)
        wF, wA = torch.as_tensor(1.0 / Fse**2), torch.as_tensor(1.0 / Ase**2)
        train_w = torch.as_tensor((~val).astype(float))
        val_w = torch.as_tensor(val.astype(float))

        def losses(weights: torch.Tensor) -> torch.Tensor:
            """Per-member mean chi^2 of F and A over the weighted points, shape (E,)."""
            b, S = model._parts(tx, need_grad=True)
            Am = S @ S.transpose(-1, -2)
            chi = ((b - tF) ** 2 * wF).sum(-1) + ((Am - tA) ** 2 * wA).sum((-1, -2))
            return (chi * weights).sum(1) / weights.sum(1).clamp_min(1.0)

        t0 = time.perf_counter()
        self._set_training(self._train(model, losses, train_w, val_w if val.any() else None, full_batch=True))
        self._finish(model, source, "estimates", {"n_points": M, "n_dropped": n_drop}, t0, None)
        return self

    # ------------------------------------------------------------------ trajectories pathway
    def _fit_trajectories(self, arr: np.ndarray, h: float, lag: float | None,
                          names: tuple[str, ...] | None, source: dict) -> "EffectiveSDEEstimator":
        o = self.options
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3:
            raise ValueError(f"trajectories have shape {arr.shape}; expected (paths, times, m) or (times, m)")
        h = positive_finite("dt", h)
        P, T, m = arr.shape
        if not np.all(np.isfinite(arr)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
            raise ValueError(f"the trajectories contain a non-finite value at index {bad} "
                             "(failed paths must be removed first)")
        ladder = lag_ladder(arr, h, seed=o.seed)
        k_rule, rule = _lag_rule(ladder)
        if lag is None:
            k = k_rule
        else:
            lag = positive_finite("lag", lag)
            k = int(round(lag / h))
            if k < 1 or abs(k * h - lag) > 1e-9 * lag:
                raise ValueError(f"lag={lag!r} is not a multiple of the sampling interval {h!r}")
        n_lags = 2 if o.method is TrajectoryMethod.MULTISCALE else 1
        if n_lags * k >= T:
            raise ValueError(f"lag {k * h!r} needs at least {n_lags * k + 1} samples per path; the data have {T}")
        _check_lag(ladder, rule, k, h, given=lag is not None)
        lagt = k * h
        model = self._new_model(m, names)
        slope = _linear_drift(arr, k, h)[0]
        xs = arr.reshape(-1, m)
        x_mean, x_std = xs.mean(0), np.maximum(xs.std(0), 1e-12)
        b_scale = np.maximum(np.abs(slope) * x_std, 0.1 * x_std / ladder["tau"])
        knots, lrng = _knots(arr, np.random.default_rng([o.seed, 3])), np.random.default_rng([o.seed, 4])
        v1 = _residuals(arr, k, knots, lrng)[3].mean(0)  # locally de-trended variance at the lag
        rate, c0 = v1 / lagt, np.zeros(m)
        if o.method is TrajectoryMethod.MULTISCALE:
            # Where the fast-scale covariance C starts: the moment estimate 2 v(lag) - v(2 lag)
            # also holds the drift's curvature (-2 A b' lag^2 > 0 for a confined process), which
            # the second-order moments model; started there, C soaks it up and biases A low
            # (problem 1a: -4%, against -1% started near zero). So C starts at the moment
            # estimate only where the ladder shows the fast scale's signature, an apparent rate
            # v / lag whose fall shrinks with each doubling of the lag (like C / lag), and near
            # zero where the fall grows (the curvature's signature).
            v2, v4 = (_residuals(arr, j * k, knots, lrng)[3].mean(0) if j * k < T else j * v1 for j in (2, 4))
            drop1, drop2 = v1 / lagt - v2 / (2 * lagt), v2 / (2 * lagt) - v4 / (4 * lagt)
            fast = (drop1 > 0) & (drop2 < drop1)
            c0 = np.where(fast, np.maximum(2 * v1 - v2, 0.01 * v1), 0.01 * v1)
            rate = np.maximum((v1 - c0) / lagt, 0.1 * v1 / lagt)
        model.set_scaling(x_mean, x_std, 0.0, b_scale, np.sqrt(rate), xs.min(0), xs.max(0))
        E = o.members
        rng = np.random.default_rng([o.seed, 2])
        n_blocks = 10
        starts, incs, lags, blk, stride = transition_pairs(arr, k, lagt, n_lags, n_blocks)
        fdt = torch.float32 if o.precision.value == "float32" else torch.float64
        X0, dX, L = (torch.as_tensor(v, dtype=fdt) for v in (starts, incs, lags))
        # Bootstrap: Poisson(1) weights per path and member; validation: held-out (path, time block)s.
        w_path = rng.poisson(1.0, (E, P)).astype(float) if o.bootstrap else np.ones((E, P))
        held = _split(rng, E, P * n_blocks, o.validation_fraction) if P * n_blocks >= 10 \
            else np.zeros((E, P * n_blocks), bool)
        w = w_path[:, blk // n_blocks]
        train_w = torch.as_tensor(np.where(held[:, blk], 0.0, w), dtype=fdt)
        val_w = torch.as_tensor(held[:, blk].astype(float), dtype=fdt)
        # The second-order moments after an Euler warm-up (about 4x cheaper per step).
        order = 2 if o.method is TrajectoryMethod.MULTISCALE else 1
        switch_at = None
        if order == 2 and o.euler_warmup > 0:
            switch_at = max(1, int(round(o.euler_warmup * o.epochs)))
        # Lag-independent covariance C = R R^T (per member): the fast-scale fluctuation of X.
        fast_cov = None
        if o.method is TrajectoryMethod.MULTISCALE:
            fast_cov = torch.nn.Parameter(torch.zeros((E, m * (m + 1) // 2), dtype=fdt))
        tril = torch.tril_indices(m, m)
        c_scale = torch.as_tensor(np.sqrt(c0), dtype=fdt)  # C = (c_scale R)(c_scale R)^T, R = I at the start
        # Validation: a fixed random subset of the pairs, evaluated in chunks.
        n_pairs = X0.shape[0]
        eval_idx = torch.as_tensor(np.sort(rng.permutation(n_pairs)[:min(n_pairs, 16384)]))

        def make_loss(net: EffectiveSDE, fcov: torch.nn.Parameter | None):
            """The loss of the members of ``net`` (a group, or all of them) with their ``C``
            parameters ``fcov``: ``(nll, switch_to_second_order, fast_matrix)``."""
            phase = {"order": 1 if switch_at else order}

            def fast_matrix() -> torch.Tensor:
                R = torch.zeros(fcov.shape[0], m, m, dtype=fdt)
                R[:, tril[0], tril[1]] = fcov
                R = torch.tril(R, -1) + torch.diag_embed(torch.exp(torch.diagonal(R, dim1=-2, dim2=-1)))
                return (c_scale[:, None] * R) @ (c_scale[:, None] * R).transpose(-1, -2)

            def nll_sums(idx: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                """Weighted sums of the negative log-likelihood over pairs ``idx`` and of the weights."""
                xb, db, lb, wb = X0[idx], dX[idx], L[idx], weights[:, idx]
                mu, cov = member_moments(net, xb, lb, phase["order"])
                C = fast_matrix()[:, None] if fcov is not None else 0.0
                cov = cov + C
                if m == 1:  # scalar variances: no batched 1x1 factorisations
                    var = cov[..., 0, 0]
                    if bool((var <= 0).any()):  # a second-order variance can turn negative: Euler's
                        var1 = (member_moments(net, xb, lb, 1)[1] + C)[..., 0, 0]
                        var = torch.where(var > 0, var, var1)
                    per = 0.5 * (torch.log(var) + (db[:, 0] - mu[..., 0]) ** 2 / var + math.log(2 * math.pi))
                    return (per * wb).sum(1), wb.sum(1)
                per = gaussian_nll(db - mu, cov, lambda: member_moments(net, xb, lb, 1)[1] + C)
                return (per * wb).sum(1), wb.sum(1)

            def nll(idx: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
                return weighted_mean_loss(nll_sums, idx, weights, eval_idx, o.batch_size)

            return nll, (lambda: phase.update(order=2)), fast_matrix

        t0 = time.perf_counter()
        buffers = {k: v.clone() for k, v in model.named_buffers()}
        model.to(fdt)
        try:
            self._train_groups(model, make_loss, fast_cov, train_w, val_w if held.any() else None,
                               n_data=X0.shape[0], rng=rng, switch_at=switch_at)
        finally:
            model.to(torch.float64)
            with torch.no_grad():  # the scaling as computed, not rounded through float32
                for k, v in model.named_buffers():
                    if k in buffers:
                        v.copy_(buffers[k])
        self.lag_ = lagt
        info = {"n_paths": P, "n_times": T, "dt": h, "lag": lagt, "lag_samples": k, "pair_stride": stride,
                "method": o.method.value, "n_pairs": int(X0.shape[0]),
                "lag_rule": _rule_info(ladder, rule, h)}
        if fast_cov is not None:
            C = make_loss(model, fast_cov)[2]().detach().double().numpy()
            info["fast_scale_covariance"] = C.mean(0).tolist()
            model.provenance["fast_scale_covariance"] = C.mean(0).tolist()
        self._finish(model, source, "trajectories", info, t0, lagt)
        return self

    # ------------------------------------------------------------------ shared training loop
    def _new_model(self, m: int, names) -> EffectiveSDE:
        o = self.options
        torch.manual_seed(o.seed)
        return EffectiveSDE(m, members=o.members, hidden=o.hidden, diffusion=o.diffusion,
                            gradient=o.gradient, names=names, seed=o.seed)

    def _train_groups(self, model: EffectiveSDE, make_loss, fast_cov: torch.nn.Parameter | None,
                      train_w: torch.Tensor, val_w: torch.Tensor | None, *, n_data: int,
                      rng: np.random.Generator, switch_at: int | None) -> None:
        """Mini-batch training of the members in groups (:func:`member_groups`), a thread each,
        at most ``options.workers`` of them computing at once.

        Each group is an ensemble of its own (a copy of its members' parameters, its own Adam)
        that draws the same mini-batches; the groups meet at every validation check to take the
        decisions that concern all members (go on to the second phase, stop) together. The
        groups depend on the number of members only, so the fitted model is the same for every
        ``workers`` (torch's batched products round a member's numbers differently in batches of
        different sizes). Threads, not torch's intra-op threads: each product stays on one core,
        and a group waits for the others (at a check, or for a free worker) by blocking, not
        spinning, when the machine is busy.
        """
        E = model.members
        G = member_groups(E)
        sync = _Lockstep(G, min(self.options.workers, G)) if G > 1 else None
        bounds = [round(g * E / G) for g in range(G + 1)]
        jobs = []
        for g in range(G):
            sel = slice(bounds[g], bounds[g + 1])
            net, fcov = model, fast_cov
            if G > 1:  # the group's own copy of its members
                net = model.subset(sel)
                fcov = torch.nn.Parameter(fast_cov.detach()[sel].clone()) if fast_cov is not None else None
            loss, to_second, _ = make_loss(net, fcov)
            jobs.append((sel, net, fcov, (net, loss, train_w[sel], None if val_w is None else val_w[sel]), dict(
                full_batch=False, n_data=n_data, extra=[fcov] if fcov is not None else [],
                rng=copy.deepcopy(rng) if G > 1 else rng, switch=(switch_at, to_second) if switch_at else None,
                sync=sync, group=g)))
        results: list[Any] = [None] * G
        errors: list[BaseException] = []

        def run(g: int) -> None:
            try:
                results[g] = self._train(*jobs[g][3], **jobs[g][4])
            except BaseException as err:  # noqa: BLE001 - re-raised by the caller's thread
                if sync is None:
                    raise
                if not isinstance(err, threading.BrokenBarrierError):
                    errors.append(err)
                sync.abort()

        threads = [threading.Thread(target=run, args=(g,), daemon=True) for g in range(1, G)]
        for t in threads:
            t.start()
        try:
            run(0)
            for t in threads:
                t.join()
        except BaseException:  # interrupted while waiting: release the other groups, then unwind
            if sync is not None:
                sync.abort()
            raise
        if errors:
            raise errors[0]
        if G > 1:
            with torch.no_grad():
                for sel, net, fcov, _, _ in jobs:
                    for p, q in zip(model.parameters(), net.parameters()):
                        p[sel] = q
                    if fcov is not None:
                        fast_cov[sel] = fcov
        hist, epoch, _ = results[0]
        self._set_training((hist, epoch, [v for r in results for v in r[2]]))

    def _set_training(self, result: tuple[dict, int, list[float]]) -> None:
        self.history_, self._epochs, self._best_val = result

    def _train(self, model: EffectiveSDE, loss_fn, train_w: torch.Tensor, val_w: torch.Tensor | None,
               *, full_batch: bool, n_data: int = 0, extra: list | None = None,
               rng: np.random.Generator | None = None,
               switch: tuple[int, Any] | None = None, sync: "_Lockstep | None" = None,
               group: int = 0) -> tuple[dict, int, list[float]]:
        """Adam with per-member early stopping on the held-out loss (best state kept per member),
        then L-BFGS for full-batch problems, kept per member only where it improves validation.

        Each member's early stop is its own: its best state is taken over its own window, not
        moved by the members still improving. ``switch = (step, fn)``: at that step (or when every member has stopped
        before it) ``fn()`` changes the loss, and the best states and patience start over.
        ``sync``: this is group ``group`` of a lock-step run (see :meth:`_train_groups`); the
        history and the all-members decisions are taken over every group's members.
        Returns the history, the last step and the best validation loss per member.
        """
        o = self.options
        E = model.members
        params = list(model.parameters()) + list(extra or [])
        opt = torch.optim.Adam(params, lr=o.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(o.epochs, 1), eta_min=o.lr * 0.02)
        wd = o.weight_decay

        def penalty() -> torch.Tensor:
            return wd * sum((w**2).sum(tuple(range(1, w.ndim))) for w in
                            list(model.drift_net.weights) + list(model.diff_net.weights))

        best = [p.detach().clone() for p in params]
        best_val = torch.full((E,), math.inf, dtype=torch.float64)
        since = torch.zeros(E, dtype=torch.long)
        stopped = torch.zeros(E, dtype=torch.bool)
        switch_at, switch_fn = switch if switch is not None else (None, None)
        hist: dict[str, list[float]] = {"epoch": [], "train": [], "val": []}
        bar = _Progress(o.progress and group == 0, o.epochs, "train")
        turn = sync.turn if sync is not None else contextlib.nullcontext()
        check_every = 1 if full_batch else 25
        batch = min(o.batch_size, n_data) if not full_batch else 0
        epoch = 0
        for epoch in range(1, o.epochs + 1):
            with turn:  # a worker while this group computes (lock-step groups)
                if switch_at is not None and epoch > switch_at:
                    switch_fn()
                    switch_at = None
                    with torch.no_grad():  # the second phase starts from each member's best state
                        for p, bp in zip(params, best):
                            p.copy_(bp)
                    best_val.fill_(math.inf)
                    since.zero_()
                    stopped.zero_()
                idx = None
                if not full_batch and batch < n_data:
                    idx = torch.as_tensor(rng.integers(0, n_data, batch))
                opt.zero_grad(set_to_none=True)
                tr = loss_fn(idx, train_w) if not full_batch else loss_fn(train_w)
                loss = tr.sum() + penalty().sum()
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"training loss became {float(loss)} at epoch {epoch}; "
                                             "lower SurrogateOptions.lr or check the data")
                loss.backward()
                opt.step()
                sched.step()
                if epoch % check_every and epoch != o.epochs:
                    continue
                with torch.no_grad():
                    if val_w is not None:
                        v = loss_fn(None, val_w) if not full_batch else loss_fn(val_w)
                    else:
                        v = (loss_fn(None, train_w) if not full_batch else tr).detach()
            v = v.detach().double()
            improved = (v < best_val - 1e-9 * v.abs()) & ~stopped
            for p, bp in zip(params, best):  # every leading axis is the member axis
                bp[improved] = p.detach()[improved]
            best_val = torch.where(improved, v, best_val)
            since = torch.where(improved, torch.zeros_like(since), since + check_every)
            if o.patience:
                stopped |= since >= o.patience
            tr_all, v_all, stopped_all = tr.detach(), v, stopped
            if sync is not None:  # every group's members, in member order
                tr_all, v_all, stopped_all = (torch.cat(x) for x in zip(*sync.exchange(group, (tr_all, v_all, stopped))))
            hist["epoch"].append(epoch)
            hist["train"].append(float(tr_all.sum()))
            hist["val"].append(float(v_all.sum()))
            bar.update(epoch, f"step {epoch}/{o.epochs}{' (Euler warm-up)' if switch_at is not None else ''} "
                              f"{stopped_all.numel()} members ({int(stopped_all.sum())} stopped): "
                              f"loss {float(tr_all.sum()):.4g} val {float(v_all.sum()):.4g}")
            if bool(stopped_all.all()):
                if switch_at is None:
                    break
                switch_at = epoch  # every member has stopped: go on to the second phase now
        with torch.no_grad():
            for p, bp in zip(params, best):
                p.copy_(bp)
        if full_batch and o.lbfgs_steps:
            lb = torch.optim.LBFGS(params, lr=1.0, max_iter=o.lbfgs_steps, line_search_fn="strong_wolfe",
                                   tolerance_grad=1e-12, tolerance_change=1e-14, history_size=50)

            def closure():
                lb.zero_grad(set_to_none=True)
                total = loss_fn(train_w).sum() + penalty().sum()
                total.backward()
                return total

            try:
                lb.step(closure)
            except RuntimeError:  # a failed line search leaves the Adam solution
                pass
            with torch.no_grad():
                v = loss_fn(val_w if val_w is not None else train_w)
                keep = torch.isfinite(v) & (v <= best_val + 1e-9 * best_val.abs())
                for p, bp in zip(params, best):
                    p.copy_(torch.where(keep.reshape(-1, *[1] * (p.ndim - 1)), p, bp))
                best_val = torch.where(keep, v, best_val)
        bar.close(f"{epoch} epochs, validation loss per member {np.round(best_val.numpy(), 4).tolist()}")
        return hist, epoch, best_val.tolist()

    def _finish(self, model: EffectiveSDE, source: dict, pathway: str, info: dict, t0: float,
                lag: float | None) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        seconds = time.perf_counter() - t0
        model.provenance = {
            **model.provenance, "pathway": pathway, "source": source, "options": _jsonable(self.options),
            "epochs": self._epochs, "train_seconds": seconds, "package_version": build_info()["version"],
            "torch_version": torch.__version__, **info}
        self.model_ = model
        self.lag_ = lag
        self.summary_ = {"pathway": pathway, "epochs": self._epochs, "seconds": seconds,
                         "validation_loss": self._best_val, **info}


def member_groups(members: int) -> int:
    """Number of lock-step groups the members of a trajectories fit train in: about five
    members a group, and two groups from four members (so two cores are used); the groups are
    contiguous runs of members whose sizes differ by at most one.

    >>> [member_groups(e) for e in (2, 3, 4, 9, 10, 11, 20)]
    [1, 1, 2, 2, 2, 3, 4]
    """
    return max(min(2, members // 2), -(-members // 5))


def transition_pairs(arr: np.ndarray, k: int, lag: float, n_lags: int, n_blocks: int):
    """Transition pairs of ``arr (paths, times, m)`` at ``k, ..., n_lags k`` samples (``lag`` is
    ``k`` samples in time units, the pairs' lags its multiples): start points
    ``(N, m)``, increments ``(N, m)``, lags ``(N,)``, the (path, time block) id of each pair and
    the stride. Overlapping pairs from every start time, thinned to a fixed stride of start
    times when there would be more than ``MAX_PAIRS`` (neighbouring pairs share most of their
    increment)."""
    P, T, m = arr.shape
    stride = max(1, math.ceil(n_lags * P * T / MAX_PAIRS))
    starts, incs, lags, blocks = [], [], [], []
    for j in range(1, n_lags + 1):
        t0 = np.arange(0, T - j * k, stride)
        s = arr[:, t0]
        starts.append(s.reshape(-1, m))
        incs.append((arr[:, t0 + j * k] - s).reshape(-1, m))
        lags.append(np.full(s.shape[0] * s.shape[1], j * lag))
        tb = np.minimum(t0 * n_blocks // T, n_blocks - 1)
        blocks.append((np.arange(P)[:, None] * n_blocks + tb[None, :]).ravel())
    return (np.concatenate(starts), np.concatenate(incs), np.concatenate(lags), np.concatenate(blocks), stride)


def gaussian_nll(resid: torch.Tensor, cov: torch.Tensor, euler_cov) -> torch.Tensor:
    """Negative log-likelihood of ``resid (E, N, m)`` under ``N(0, cov (E, N, m, m))``; where a
    (second-order) ``cov`` is not positive definite, ``euler_cov()``'s covariance is used."""
    chol, info = torch.linalg.cholesky_ex(cov)
    if bool((info != 0).any()):  # a second-order covariance can lose definiteness: Euler's
        chol = torch.linalg.cholesky(torch.where((info != 0)[..., None, None], euler_cov(), cov))
    sol = torch.linalg.solve_triangular(chol, resid[..., None], upper=False)[..., 0]
    logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (logdet + (sol**2).sum(-1)) + 0.5 * resid.shape[-1] * math.log(2 * math.pi)


def weighted_mean_loss(sums, idx: torch.Tensor | None, weights: torch.Tensor, eval_idx: torch.Tensor,
                       batch: int) -> torch.Tensor:
    """Per-member weighted mean loss over the pairs ``idx`` (a training batch), or over the fixed
    validation subsample ``eval_idx`` in chunks of ``batch`` (``idx=None``); ``sums(idx, weights)``
    returns the weighted loss and weight sums per member."""
    if idx is not None:
        tot, wsum = sums(idx, weights)
    else:
        tot = wsum = 0.0
        for chunk in torch.split(eval_idx, max(1, batch)):
            t_, w_ = sums(chunk, weights)
            tot, wsum = tot + t_, wsum + w_
    return tot / torch.as_tensor(wsum).clamp_min(1.0)


class _Lockstep:
    """The meeting point of lock-step training groups: each group posts its value and waits for
    the others (blocking, not spinning); every group then reads all the values in group order.
    ``workers``: how many groups may compute at once (:meth:`turn`)."""

    def __init__(self, groups: int, workers: int) -> None:
        self._barrier = threading.Barrier(groups)
        self._slots: list[Any] = [None] * groups
        self.turn = threading.BoundedSemaphore(workers)  # held while a group computes a step

    def exchange(self, group: int, value: Any) -> list[Any]:
        self._slots[group] = value
        self._barrier.wait()
        out = list(self._slots)
        self._barrier.wait()  # nobody posts the next round's value before everyone has read this one
        return out

    def abort(self) -> None:
        """Release the groups waiting here (they raise ``BrokenBarrierError``): one has failed."""
        self._barrier.abort()


def _slow_names(ds: xr.Dataset, names: list[str]) -> list[str]:
    """The slow states of a simulation dataset: its ``slow_states_json`` attribute (written by
    :func:`multiscale.simulate` and campaigns), else the catalogue model's slow variables, else
    every saved state, with a :class:`StateRolesWarning` naming them."""
    import json

    if "slow_states_json" in ds.attrs:
        slow = [str(s) for s in json.loads(ds.attrs["slow_states_json"])]
        missing = [s for s in slow if s not in names]
        if missing:
            raise ValueError(f"the dataset's slow states {missing} are not among its saved states {names}")
        return slow
    model = ds.attrs.get("model")
    if model:
        try:
            from ..models import get_model
            info = get_model(model)
            p = {**info.defaults, **json.loads(ds.attrs.get("params_json", "{}"))}
            slow, _ = info.state_names(p)
            if all(s in names for s in slow):
                return list(slow)
        except (ValueError, KeyError):  # not a catalogue model (or its parameters are unreadable)
            pass
    warnings.warn(f"the dataset does not say which states are slow (no slow_states_json attribute); "
                  f"all saved states {names} are modelled as slow variables (pass variables=[...] "
                  "to choose)", StateRolesWarning, stacklevel=4)
    return names


def _split(rng: np.random.Generator, E: int, n: int, fraction: float) -> np.ndarray:
    """Held-out mask ``(E, n)``: an independent random ``fraction`` of the items per member."""
    n_val = int(round(fraction * n))
    mask = np.zeros((E, n), bool)
    for e in range(E):
        mask[e, rng.permutation(n)[:n_val]] = True
    return mask


def _linear_drift(arr: np.ndarray, k: int, h: float) -> tuple[np.ndarray, np.ndarray]:
    """Per dimension, the OU-calibrated fit of increments at lag ``k h`` on the start point:
    the linear drift slope and the diffusion rate (exact for a linear-drift diffusion)."""
    x0 = arr[:, :-k].reshape(-1, arr.shape[2])
    dx = arr[:, k:].reshape(-1, arr.shape[2]) - x0
    lagt = k * h
    xc = x0 - x0.mean(0)
    var_x = np.maximum((xc**2).mean(0), 1e-300)
    a = (xc * (dx - dx.mean(0))).mean(0) / var_x  # regression slope = exp(-K lag) - 1
    res = dx - dx.mean(0) - a * xc
    rv = (res**2).mean(0)
    one_plus = np.clip(1.0 + a, 1e-12, None)
    kappa = -np.log(one_plus) / lagt  # K; negative for an unstable linear part
    with np.errstate(over="ignore", invalid="ignore"):
        factor = np.where(np.abs(kappa * lagt) > 1e-8, 2 * kappa * lagt / -np.expm1(-2 * kappa * lagt), 1.0)
    return -kappa, rv / lagt * factor


def _autocorr_time(arr: np.ndarray, h: float) -> float:
    """Smallest integrated autocorrelation time over the slow dimensions (sum to the first zero)."""
    P, T, m = arr.shape
    xc = arr - arr.mean(axis=(0, 1))
    n_fft = 1 << int(np.ceil(np.log2(2 * T)))
    f = np.fft.rfft(xc, n=n_fft, axis=1)
    ac = np.fft.irfft(f * np.conj(f), n=n_fft, axis=1)[:, :T].sum(0)  # (T, m)
    ac = ac / np.arange(T, 0, -1)[:, None] / P
    rho = ac / np.maximum(ac[0], 1e-300)
    taus = []
    for j in range(m):
        neg = np.nonzero(rho[:, j] <= 0)[0]
        end = neg[0] if neg.size else T
        taus.append(h * (0.5 + rho[1:end, j].sum()))
    return float(max(min(taus), h))


def _knots(arr: np.ndarray, rng: np.random.Generator, n: int = 11) -> np.ndarray:
    """Quantile knots ``(n, m)`` of the local de-trending basis, strictly increasing."""
    x = arr.reshape(-1, arr.shape[-1])
    kn = np.quantile(x[rng.integers(0, x.shape[0], min(x.shape[0], 100_000))], np.linspace(0, 1, n), axis=0)
    return np.maximum.accumulate(kn + np.arange(n)[:, None] * 1e-12 * (1 + np.abs(kn)), 0)


def _residuals(arr: np.ndarray, k: int, knots: np.ndarray, rng: np.random.Generator):
    """Locally de-trended squared increments at lag ``k`` samples, on at most ``LADDER_PAIRS``
    random start points: their path and time indices, the start points and the residuals^2."""
    P, T, m = arr.shape
    n_start = P * (T - k)
    pick = rng.choice(n_start, size=LADDER_PAIRS, replace=False) if n_start > LADDER_PAIRS else np.arange(n_start)
    p, t = np.divmod(pick, T - k)
    x0 = arr[p, t]
    dx = arr[p, t + k] - x0
    X = _detrend_features(x0, knots)
    coef, *_ = np.linalg.lstsq(X, dx, rcond=None)
    return p, t, x0, (dx - X @ coef) ** 2


def _detrend_features(x0: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Regressors of a local (additive piecewise-linear, plus pairwise products for a few
    dimensions) model of the conditional mean increment: ``(N, F)``."""
    N, m = x0.shape
    cols = [np.ones((N, 1))]
    for i in range(m):
        kn = knots[:, i]
        w = np.maximum(np.diff(kn), 1e-300)
        # hat functions on the knots (linear interpolation weights), clipped at the ends
        pos = np.clip(np.searchsorted(kn, x0[:, i], side="right") - 1, 0, kn.size - 2)
        frac = np.clip((x0[:, i] - kn[pos]) / w[pos], 0.0, 1.0)
        H = np.zeros((N, kn.size))
        H[np.arange(N), pos] = 1 - frac
        H[np.arange(N), pos + 1] += frac
        cols.append(H[:, 1:])
        cols.append(x0[:, i:i + 1] - kn[0])
    if 1 < m <= 8:
        z = (x0 - x0.mean(0)) / np.maximum(x0.std(0), 1e-300)
        iu = np.triu_indices(m, 1)
        cols.append(z[:, iu[0]] * z[:, iu[1]])
    return np.concatenate(cols, 1)


LADDER_PAIRS = 200_000  # pairs per ladder level (a random subsample of the start times)
RULE_TOL = 0.1          # relative change of the differenced rate per lag doubling read as "settled"


def _groups(P: int, T: int) -> tuple[np.ndarray, np.ndarray]:
    """Error-bar groups: up to 16 groups of paths, or 8 time blocks for fewer than 8 paths.
    Returns the group of each path and of each time, one of which is all zeros."""
    if P >= 8:
        return np.arange(P) * min(P, 16) // P, np.zeros(T, int)
    return np.zeros(P, int), np.minimum(np.arange(T) * 8 // T, 7)


def lag_ladder(arr: np.ndarray, h: float, max_levels: int = 12, regions: int = 3,
               seed: int = 0) -> dict[str, Any]:
    """Conditional variance of the increments at lags ``k h``, ``k = 1, 2, 4, ...``, per dimension.

    The increments are de-trended *locally*: their conditional mean given the start point is
    fitted by least squares on a piecewise-linear basis in each slow variable (knots at the
    start points' quantiles; plus pairwise products for up to 8 variables), so the drift's
    nonlinearity (a double well's barrier and wells) does not leak into the variance. With
    ``v(tau)`` the mean squared residual at lag ``tau``:

    * ``v / tau`` is the increments' apparent diffusion rate;
    * ``d_j = (v(2 tau_j) - v(tau_j)) / tau_j`` is the *differenced* rate: for lags past the fast
      scale ``v = C + A tau + c tau^2``, so ``d = A + 3 c tau`` no longer sees the fast
      fluctuation's lag-independent variance ``C``; below the fast scale it does not read ``A``.

    Parameters
    ----------
    arr : ndarray, shape (paths, times, m) or (times, m)
        Slow variables sampled every ``h``.
    h : float
        Sampling interval (time units).
    max_levels : int
        Most lags on the ladder. The largest lag is at most a quarter of the slow variables'
        integrated autocorrelation time and leaves at least 20 pairs per path.
    regions : int
        State-space regions (quantiles of the first variable) for the per-region diagnostics.

    Returns
    -------
    dict
        ``k (L,)`` lags in samples; ``v (L, m)`` apparent rate ``v / tau``; ``d (L-1, m)``
        differenced rate with standard error ``d_se`` (from groups of paths or time blocks);
        ``change (L-2, m)`` relative change ``d_{j+1} / d_j - 1`` with ``change_se``;
        ``region_edges (regions+1,)`` and ``region_d (regions, L-1, m)``; ``tau`` the
        autocorrelation time.
    """
    arr = arr if arr.ndim == 3 else arr[None]
    P, T, m = arr.shape
    tau = _autocorr_time(arr, h)
    ks = []
    k = 1
    while len(ks) < max_levels + 1 and k * 20 <= T:
        if len(ks) >= 3 and k * h > tau / 4:
            break
        ks.append(k)
        k *= 2
    if len(ks) < 3:
        ks = [1, 2, 4]
        if 4 >= T:
            raise ValueError(f"the trajectories have {T} samples; the lag ladder needs at least 5")
    rng = np.random.default_rng(seed)
    gp, gt = _groups(P, T)
    G = int(max(gp.max(), gt.max())) + 1
    x_all = arr.reshape(-1, m)
    knots = _knots(arr, rng)
    edges = np.quantile(x_all[:, 0], np.linspace(0, 1, regions + 1))
    v = np.zeros((len(ks), m))
    vg = np.zeros((len(ks), G, m))
    vr = np.zeros((len(ks), regions, m))
    for li, k in enumerate(ks):
        p, t, x0, r2 = _residuals(arr, k, knots, rng)
        v[li] = r2.mean(0) / (k * h)
        g = np.maximum(gp[p], gt[t])
        reg = np.clip(np.searchsorted(edges, x0[:, 0], side="right") - 1, 0, regions - 1)
        for arr_out, lab, n in ((vg, g, G), (vr, reg, regions)):
            cnt = np.bincount(lab, minlength=n)[:, None]
            sums = np.stack([np.bincount(lab, r2[:, j], minlength=n) for j in range(m)], 1)
            arr_out[li] = sums / np.maximum(cnt, 1) / (k * h)
    kk = np.asarray(ks, float)[:, None]

    def diff(vv: np.ndarray) -> np.ndarray:  # d_j = (v(2 tau) - v(tau)) / tau, per unit h
        var = vv * kk.reshape((-1,) + (1,) * (vv.ndim - 1))
        return (var[1:] - var[:-1]) / kk[:-1].reshape((-1,) + (1,) * (vv.ndim - 1))

    d, dg, dr = diff(v), diff(vg), diff(vr)
    with np.errstate(divide="ignore", invalid="ignore"):
        ch = d[1:] / d[:-1] - 1
        chg = dg[1:] / dg[:-1] - 1
    # Jackknife-free error bars: the spread over the G independent groups.
    se = lambda a: a.std(1, ddof=1) / np.sqrt(G) if G > 1 else np.full(a.shape[:1] + a.shape[2:], np.inf)  # noqa: E731
    return {"k": np.asarray(ks), "v": v, "d": d, "d_se": se(dg), "change": ch,
            "change_se": se(np.where(np.isfinite(chg), chg, np.nan)),
            "region_edges": edges, "region_d": np.moveaxis(dr, 1, 0), "tau": tau}


def _lag_rule(ladder: dict[str, Any], tol: float = RULE_TOL) -> tuple[int, dict[str, Any]]:
    """The default lag and why (see :func:`choose_lag`)."""
    ks, d, dse, ch, chse = (ladder[n] for n in ("k", "d", "d_se", "change", "change_se"))
    chse = np.where(np.isfinite(chse), chse, np.inf)
    n = ch.shape[0]
    positive = np.all(d > 3 * dse, 1)  # a rate that is there, not lost in the noise
    big = np.max(np.abs(ch) - 3 * chse, 1)  # the change beyond its noise, worst dimension
    significant = (big > 0) & positive[:-1] & positive[1:]
    # The fast-scale knee: a significant change that is significantly smaller at the next doubling
    # of the lag. The slow dynamics' own curvature does the opposite (d = A + 3 c lag: the change
    # doubles with the lag). After the last knee, the lag moves on while the change is still
    # significant and shrinking (more than halving, within its noise).
    decays = np.zeros(n, bool)
    shrinks = np.zeros(n, bool)
    for j in range(n - 1):
        if significant[j] and positive[j + 2]:
            a0, a1 = np.abs(ch[j]), np.abs(ch[j + 1])
            decays[j] = bool(np.all(a0 - a1 > 3 * np.hypot(chse[j], chse[j + 1])))
            shrinks[j] = bool(np.all(a1 < 0.5 * a0 + 3 * chse[j + 1]))
    knees = np.nonzero(decays)[0]
    j = int(knees[-1]) + 1 if knees.size else 0
    while knees.size and j < n - 1 and shrinks[j]:
        j += 1
    curv = next((int(ks[i]) for i in range(j, n) if np.any(np.abs(ch[i]) > tol + 3 * chse[i])), None)
    settled = bool(np.all(np.abs(ch[min(j, n - 1)]) <= 2 * tol + 3 * chse[min(j, n - 1)])) and bool(positive[j])
    info = {"chosen": int(ks[j]), "knee": int(ks[j - 1]) if knees.size else None, "curvature": curv,
            "significant": significant.tolist(), "decays": decays.tolist(), "reliable": settled,
            "fast_scale_resolved": bool(knees.size)}
    if not settled:
        info["reason"] = (f"the differenced rate still changes by {100 * float(np.max(np.abs(ch[min(j, n - 1)]))):.0f}% "
                          "per doubling of the lag at the chosen lag: the data do not show a lag where the "
                          "increments look like a diffusion")
    elif knees.size:
        info["reason"] = (f"the rate changes across the fast scale up to lag {int(ks[j - 1])} samples and has "
                          "settled from the chosen lag on")
    else:
        info["reason"] = ("no fast-scale knee on the ladder: the sampling does not resolve the fast scale, "
                          "so the shortest lag is used")
    return int(ks[j]), info


def _rule_info(ladder: dict[str, Any], rule: dict[str, Any], h: float) -> dict[str, Any]:
    """The ladder and the rule's decision, JSON-ready (``info["lag_rule"]``), lags in time units."""
    ks = ladder["k"]
    lag = lambda k: None if k is None else float(k * h)  # noqa: E731
    return {"lag": (ks * h).tolist(), "rate": ladder["v"].tolist(), "differenced_lag": (ks[:-1] * h).tolist(),
            "differenced_rate": ladder["d"].tolist(), "differenced_rate_se": ladder["d_se"].tolist(),
            "change": ladder["change"].tolist(), "significant": rule["significant"], "decays": rule["decays"],
            "region_edges": ladder["region_edges"].tolist(), "region_differenced_rate": ladder["region_d"].tolist(),
            "autocorrelation_time": float(ladder["tau"]), "chosen_lag": lag(rule["chosen"]),
            "knee_lag": lag(rule["knee"]), "curvature_lag": lag(rule["curvature"]),
            "fast_scale_resolved": rule["fast_scale_resolved"], "reliable": rule["reliable"],
            "reason": rule["reason"]}


def choose_lag(ladder: dict[str, Any], tol: float = RULE_TOL) -> int:
    """The documented default lag (in samples).

    On the ladder of differenced rates ``d_j`` (:func:`lag_ladder`) a level is *settled* when
    ``d`` changes by at most ``tol`` (plus three standard errors) from lag ``k_j`` to ``2 k_j``
    and is significantly positive. Unsettled levels at the long end are the slow dynamics' own
    curvature; an unsettled level before them is the fast scale (the knee). The rule takes the
    first lag after the last knee, or the shortest lag when there is none (data that do not
    resolve the fast scale).
    """
    return _lag_rule(ladder, tol)[0]


def _check_lag(ladder: dict[str, Any], rule: dict[str, Any], k: int, h: float, given: bool) -> None:
    """Warn when the data cannot support a reliable lag, when a given lag is below the fast-scale
    knee, or when the lag is not small against the slow relaxation."""
    ks = ladder["k"]
    if not rule["reliable"]:
        warnings.warn(f"the lag rule found no lag on the ladder {(ks * h).round(6).tolist()} where the "
                      f"increments' differenced rate settles ({rule['reason']}); lag {k * h:.4g} is a guess: "
                      "sample more finely, simulate longer paths, or give lag=", LagWarning, stacklevel=4)
    if given and rule["knee"] is not None and k <= rule["knee"]:
        j = int(np.searchsorted(ks, k))
        d = ladder["d"][min(j, len(ladder["d"]) - 1)]
        warnings.warn(
            f"lag {k * h:.4g} is at or below the fast-scale knee (lag {rule['knee'] * h:.4g}): the "
            f"increments' differenced rate {np.round(d, 4).tolist()} still changes there, so a fit at "
            f"this lag reads the unhomogenized noise; the rule's lag is {rule['chosen'] * h:.4g} "
            "(lag=None)", LagWarning, stacklevel=4)
    if k * h > ladder["tau"] / 2:
        warnings.warn(f"lag {k * h:.4g} is not small against the slow variables' autocorrelation "
                      f"time {ladder['tau']:.4g}; the drift and diffusion will be biased",
                      LagWarning, stacklevel=4)
    elif given and rule["curvature"] is not None and k > rule["curvature"]:
        warnings.warn(f"lag {k * h:.4g} is past lag {rule['curvature'] * h:.4g}, where the slow dynamics' "
                      "own curvature bends the increments' rate; the fit relies on the second-order "
                      "transition density there (method=MULTISCALE)", LagWarning, stacklevel=4)
