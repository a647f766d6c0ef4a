"""Fitting :class:`EffectiveSDE` to averaged-drift estimates or to coarse slow trajectories."""
from __future__ import annotations

import math
import os
import sys
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
from .._errors import LagWarning, MultiscaleWarning
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
            names = list(ds["state"].values)
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
        self._train(model, losses, train_w, val_w if val.any() else None, full_batch=True)
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
        ladder = lag_ladder(arr, h)
        if lag is None:
            k = choose_lag(ladder)
        else:
            lag = positive_finite("lag", lag)
            k = int(round(lag / h))
            if k < 1 or abs(k * h - lag) > 1e-9 * lag:
                raise ValueError(f"lag={lag!r} is not a multiple of the sampling interval {h!r}")
        n_lags = 2 if o.method is TrajectoryMethod.MULTISCALE else 1
        if n_lags * k >= T:
            raise ValueError(f"lag {k * h!r} needs at least {n_lags * k + 1} samples per path; the data have {T}")
        _check_lag(ladder, k, h)
        lagt = k * h
        model = self._new_model(m, names)
        slope, resid = _linear_drift(arr, k, h)
        xs = arr.reshape(-1, m)
        x_mean, x_std = xs.mean(0), np.maximum(xs.std(0), 1e-12)
        b_scale = np.maximum(np.abs(slope) * x_std, 0.1 * x_std / ladder["tau"])
        rate, c0 = resid, np.zeros(m)
        if o.method is TrajectoryMethod.MULTISCALE:
            # Moment estimates at lags k and 2k start the fit where it should end: variance
            # v(j) = rate j lag + C, hence rate = (v(2) - v(1)) / lag and C = 2 v(1) - v(2).
            v1, v2 = resid * lagt, _linear_drift(arr, 2 * k, h)[1] * 2 * lagt
            c0 = np.maximum(2 * v1 - v2, 1e-4 * v1)
            rate = np.maximum((v2 - v1) / lagt, 0.1 * resid)
        model.set_scaling(x_mean, x_std, 0.0, b_scale, np.sqrt(rate), xs.min(0), xs.max(0))
        E = o.members
        rng = np.random.default_rng([o.seed, 2])
        # Pairs at lags k (and 2k): starting points and increments, with their (path, block) id.
        starts, incs, lags, blocks = [], [], [], []
        n_blocks = 10
        # Overlapping pairs from every start time, thinned to a fixed stride of start times when
        # there would be more than MAX_PAIRS (neighbouring pairs share most of their increment).
        stride = max(1, math.ceil(n_lags * P * T / MAX_PAIRS))
        for j in range(1, n_lags + 1):
            t0 = np.arange(0, T - j * k, stride)
            s = arr[:, t0]
            starts.append(s.reshape(-1, m))
            incs.append((arr[:, t0 + j * k] - s).reshape(-1, m))
            lags.append(np.full(s.shape[0] * s.shape[1], j * lagt))
            tb = np.minimum(t0 * n_blocks // T, n_blocks - 1)
            blocks.append((np.arange(P)[:, None] * n_blocks + tb[None, :]).ravel())
        X0 = torch.as_tensor(np.concatenate(starts))
        dX = torch.as_tensor(np.concatenate(incs))
        L = torch.as_tensor(np.concatenate(lags))
        blk = np.concatenate(blocks)
        # Bootstrap: Poisson(1) weights per path and member; validation: held-out (path, time block)s.
        w_path = rng.poisson(1.0, (E, P)).astype(float) if o.bootstrap else np.ones((E, P))
        held = _split(rng, E, P * n_blocks, o.validation_fraction) if P * n_blocks >= 10 \
            else np.zeros((E, P * n_blocks), bool)
        w = w_path[:, blk // n_blocks]
        train_w = torch.as_tensor(np.where(held[:, blk], 0.0, w))
        val_w = torch.as_tensor(held[:, blk].astype(float))
        order = 2 if o.method is TrajectoryMethod.MULTISCALE else 1
        # Lag-independent covariance C = R R^T (per member): the fast-scale fluctuation of X.
        fast_cov = None
        if o.method is TrajectoryMethod.MULTISCALE:
            fast_cov = torch.nn.Parameter(torch.zeros((E, m * (m + 1) // 2), dtype=torch.float64))
        tril = torch.tril_indices(m, m)
        c_scale = torch.as_tensor(np.sqrt(c0))  # C = (c_scale R)(c_scale R)^T, R = I at the start

        def fast_matrix() -> torch.Tensor:
            R = torch.zeros(E, m, m, dtype=torch.float64)
            R[:, tril[0], tril[1]] = fast_cov
            R = torch.tril(R, -1) + torch.diag_embed(torch.exp(torch.diagonal(R, dim1=-2, dim2=-1)))
            return (c_scale[:, None] * R) @ (c_scale[:, None] * R).transpose(-1, -2)

        def nll_sums(idx: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            """Weighted sums of the negative log-likelihood over pairs ``idx`` and of the weights."""
            xb, db, lb, wb = X0[idx], dX[idx], L[idx], weights[:, idx]
            mu, cov = member_moments(model, xb, lb, order)
            if fast_cov is not None:
                cov = cov + fast_matrix()[:, None]
            chol, info = torch.linalg.cholesky_ex(cov)
            if bool((info != 0).any()):  # a second-order covariance can lose definiteness: Euler's
                _, cov1 = member_moments(model, xb, lb, 1)
                if fast_cov is not None:
                    cov1 = cov1 + fast_matrix()[:, None]
                chol = torch.linalg.cholesky(torch.where((info != 0)[..., None, None], cov1, cov))
            r = (db - mu)[..., None]
            sol = torch.linalg.solve_triangular(chol, r, upper=False)[..., 0]
            logdet = 2 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
            per = 0.5 * (logdet + (sol**2).sum(-1)) + 0.5 * m * math.log(2 * math.pi)
            return (per * wb).sum(1), wb.sum(1)

        # Validation: a fixed random subset of the pairs, evaluated in chunks.
        n_pairs = X0.shape[0]
        eval_idx = torch.as_tensor(np.sort(rng.permutation(n_pairs)[:min(n_pairs, 16384)]))

        def nll(idx: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
            if idx is not None:
                tot, wsum = nll_sums(idx, weights)
            else:
                tot = wsum = 0.0
                for chunk in torch.split(eval_idx, o.batch_size):
                    t_, w_ = nll_sums(chunk, weights)
                    tot, wsum = tot + t_, wsum + w_
            return tot / torch.as_tensor(wsum).clamp_min(1.0)

        extra = [fast_cov] if fast_cov is not None else []
        t0 = time.perf_counter()
        self._train(model, nll, train_w, val_w if held.any() else None, full_batch=False,
                    n_data=X0.shape[0], extra=extra, rng=rng)
        self.lag_ = lagt
        info = {"n_paths": P, "n_times": T, "dt": h, "lag": lagt, "lag_samples": k, "pair_stride": stride,
                "method": o.method.value, "n_pairs": int(X0.shape[0]),
                "lag_ladder": {"lag": (ladder["k"] * h).tolist(), "qv_rate": ladder["v"].tolist()}}
        if fast_cov is not None:
            C = fast_matrix().detach().numpy()
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

    def _train(self, model: EffectiveSDE, loss_fn, train_w: torch.Tensor, val_w: torch.Tensor | None,
               *, full_batch: bool, n_data: int = 0, extra: list | None = None,
               rng: np.random.Generator | None = None) -> None:
        """Adam with per-member early stopping on the held-out loss (best state kept per member),
        then L-BFGS for full-batch problems, kept per member only where it improves validation."""
        o = self.options
        E = o.members
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
        hist: dict[str, list[float]] = {"epoch": [], "train": [], "val": []}
        bar = _Progress(o.progress, o.epochs, "train")
        check_every = 1 if full_batch else 25
        batch = min(o.batch_size, n_data) if not full_batch else 0
        epoch = 0
        for epoch in range(1, o.epochs + 1):
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
            v = v.detach()
            improved = v < best_val - 1e-9 * v.abs()
            for p, bp in zip(params, best):  # every leading axis is the member axis
                bp[improved] = p.detach()[improved]
            best_val = torch.where(improved, v, best_val)
            since = torch.where(improved, torch.zeros_like(since), since + check_every)
            hist["epoch"].append(epoch)
            hist["train"].append(float(tr.detach().sum()))
            hist["val"].append(float(v.sum()))
            bar.update(epoch, f"loss {float(tr.detach().sum()):.4g} val {float(v.sum()):.4g}")
            if o.patience and bool((since >= o.patience).all()):
                break
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
        self.history_ = hist
        self._epochs = epoch
        self._best_val = best_val.tolist()
        bar.close(f"{epoch} epochs, validation loss per member {np.round(best_val.numpy(), 4).tolist()}")

    def _finish(self, model: EffectiveSDE, source: dict, pathway: str, info: dict, t0: float,
                lag: float | None) -> None:
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        seconds = time.perf_counter() - t0
        model.provenance = {
            **model.provenance, "pathway": pathway, "source": source, "options": _jsonable(self.options),
            "epochs": self._epochs, "train_seconds": seconds, "package_version": build_info()["version"],
            "torch_version": torch.__version__, **{k: v for k, v in info.items() if k != "lag_ladder"}}
        self.model_ = model
        self.lag_ = lag
        self.summary_ = {"pathway": pathway, "epochs": self._epochs, "seconds": seconds,
                         "validation_loss": self._best_val, **info}


def _slow_names(ds: xr.Dataset, names: list[str]) -> list[str]:
    """The model's slow variables when the dataset comes from a catalogue model."""
    model = ds.attrs.get("model")
    if model:
        try:
            import json

            from ..models import get_model
            info = get_model(model)
            p = {**info.defaults, **json.loads(ds.attrs.get("params_json", "{}"))}
            slow, _ = info.state_names(p)
            if all(s in names for s in slow):
                return list(slow)
        except (ValueError, KeyError):  # not a catalogue model (or its parameters are unreadable)
            pass
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


def lag_ladder(arr: np.ndarray, h: float, max_levels: int = 12) -> dict[str, np.ndarray]:
    """Diffusion rate of the increments at lags ``k h``, ``k = 1, 2, 4, ...``, per dimension.

    The rate is the residual variance per unit lag after an OU-calibrated linear drift fit (see
    ``_linear_drift``), so it is lag-independent for a linear diffusion. Data that resolve the
    fast scale show a rate that falls with the lag until it reaches the homogenized plateau.

    Returns ``{"k": (L,), "v": (L, m)}``; the largest lag is at most a quarter of the slow
    variables' integrated autocorrelation time and leaves at least 20 pairs per path.
    """
    arr = arr if arr.ndim == 3 else arr[None]
    P, T, m = arr.shape
    tau = _autocorr_time(arr, h)
    ks, vs = [], []
    k = 1
    while len(ks) < max_levels and k * 20 <= T:
        if ks and k * h > tau / 4:
            break
        ks.append(k)
        vs.append(_linear_drift(arr, k, h)[1])
        k *= 2
    if not ks:
        ks, vs = [1], [_linear_drift(arr, 1, h)[1]]
    return {"k": np.asarray(ks), "v": np.asarray(vs), "tau": tau}


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


def choose_lag(ladder: dict[str, np.ndarray], tol: float = 0.05) -> int:
    """The documented default lag (in samples): the smallest ladder lag whose diffusion rate is
    within ``tol`` of the rate at the largest ladder lag in every dimension, i.e. the first lag
    past the fast scale where the increments look like a diffusion."""
    ks, v = ladder["k"], ladder["v"]
    ref = v[-1]
    for k, row in zip(ks, v):
        if np.all(np.abs(row / ref - 1) <= tol):
            return int(k)
    return int(ks[-1])


def _check_lag(ladder: dict[str, np.ndarray], k: int, h: float) -> None:
    """Warn when the increments at lag ``k`` still carry fast-scale variance, or when the lag is
    not small against the slow relaxation time."""
    ks, v = ladder["k"], ladder["v"]
    vk = _interp_rate(ks, v, k)
    ratio = vk / v[-1]
    if len(ks) > 1 and k < ks[-1] and np.any(ratio > 1.1):
        warnings.warn(
            f"lag {k * h:.4g}: the increments' diffusion rate {np.round(vk, 4).tolist()} is "
            f"{100 * (float(ratio.max()) - 1):.0f}% above its value at lag {ks[-1] * h:.4g} "
            f"({np.round(v[-1], 4).tolist()}): the data resolve the fast scale and a fit at this lag "
            "reads the unhomogenized noise. Use a larger lag (default rule: lag=None).",
            LagWarning, stacklevel=4)
    if k * h > ladder["tau"] / 2:
        warnings.warn(f"lag {k * h:.4g} is not small against the slow variables' autocorrelation "
                      f"time {ladder['tau']:.4g}; the drift and diffusion will be biased",
                      LagWarning, stacklevel=4)


def _interp_rate(ks: np.ndarray, v: np.ndarray, k: int) -> np.ndarray:
    """Rate at the largest ladder lag not above ``k``."""
    return v[max(int(np.searchsorted(ks, k, side="right")) - 1, 0)]
