"""Hybrid effective SDEs on a ring: ``dX = [R(X) + U(X)] dt + S(X) dW`` with a given resolved part
``R`` and learned local, weight-shared closures.

For ``K`` slow variables on a ring (Lorenz-96's ``X_k``), the unresolved drift of site ``k`` is
``U(X)_k = u(X_{k-s}, ..., X_{k+s})`` and its noise ``S(X)_kk = sigma(X_{k-s}, ..., X_{k+s})``,
with the *same* networks ``u`` and ``sigma`` for every ``k``: the model is exactly equivariant
under shifts of the ring, and every site of every snapshot is a training sample. The resolved
part ``R`` is a slow-only :class:`multiscale.Model` with one vector variable of size ``K``
(for Lorenz-96 ``-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F``), evaluated in torch.
"""
from __future__ import annotations

import dataclasses
import json
import math
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..simulate import Precision
from ._model import _SOFTPLUS_ONE, EffectiveSDE, _Ensemble


@dataclass(frozen=True)
class RingClosure:
    """Structure of a hybrid local closure on a ring of ``K`` slow variables.

    Parameters
    ----------
    stencil : int
        Half-width ``s``: site ``k``'s closure sees ``X_{k-s} .. X_{k+s}`` (``2 s + 1`` inputs).
    resolved : multiscale.Model, optional
        The resolved tendency ``R(X)``: a model with slow equations only, one vector variable of
        size ``K`` (default: none, ``R = 0``).
    params : mapping, optional
        Parameter values of ``resolved``.
    """

    stencil: int = 2
    resolved: Any = None
    params: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.stencil, bool) or not isinstance(self.stencil, int) or not 0 <= self.stencil <= 16:
            raise ValueError(f"stencil={self.stencil!r} must be an integer in [0, 16]")
        if self.resolved is not None:
            from ..models import Model

            if not isinstance(self.resolved, Model):
                raise ValueError(f"resolved={self.resolved!r} must be a multiscale.Model (slow equations only)")
            if self.resolved.uses_eps:
                # the resolved part is a closed model's tendency: no scale separation in it
                raise ValueError(f"resolved model {self.resolved.name!r} uses eps; write the resolved tendency "
                                 "with explicit parameters")


class LocalEffectiveSDE(torch.nn.Module):
    """``dX = [R(X) + U(X)] dt + S(X) dW`` on a ring of ``K`` sites, ``U`` and diagonal ``S`` from
    local weight-shared networks (a deep ensemble of ``members``).

    Evaluation methods take ``(n, K)`` NumPy arrays (NumPy out) or torch tensors (differentiable
    torch out), like :class:`EffectiveSDE`.
    """

    def __init__(self, sites: int, *, stencil: int = 2, members: int = 10, hidden: tuple[int, ...] = (32, 32),
                 resolved: Any = None, resolved_params: Mapping[str, float] | None = None,
                 names: tuple[str, ...] | list[str] | None = None, seed: int = 0) -> None:
        super().__init__()
        if isinstance(sites, bool) or not isinstance(sites, int) or not 1 <= sites <= 4096:
            raise ValueError(f"sites={sites!r} must be an integer in [1, 4096]")
        if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= 1000:
            raise ValueError(f"members={members!r} must be an integer in [1, 1000]")
        if not (1 <= len(tuple(hidden)) <= 8 and all(isinstance(w, (int, np.integer)) and not isinstance(w, bool)
                                                     and 1 <= w <= 4096 for w in hidden)):
            raise ValueError(f"hidden={hidden!r} must be 1 to 8 layer widths in [1, 4096]")
        RingClosure(stencil, resolved, resolved_params)  # validates
        if 2 * stencil + 1 > sites:
            raise ValueError(f"stencil={stencil} needs at least {2 * stencil + 1} sites; the ring has {sites}")
        self.dim = self.sites = sites
        self.stencil, self.members, self.hidden, self.seed = stencil, int(members), tuple(hidden), int(seed)
        self.names = tuple(names) if names is not None else tuple(f"X[{k}]" for k in range(sites))
        if len(self.names) != sites:
            raise ValueError(f"names={names!r} must be {sites} strings")
        self.resolved = resolved
        self.resolved_params = dict(resolved_params or {})
        self._R = None
        if resolved is not None:
            self._R = resolved.torch_functions(self.resolved_params)
            slow, fast = resolved.state_names(self.resolved_params)
            if fast or len(slow) != sites:
                raise ValueError(f"resolved model {resolved.name!r} must have {sites} slow states and no fast "
                                 f"ones (it has {len(slow)} and {len(fast)})")
        gen = torch.Generator().manual_seed(int(seed) % 2**63)
        width = 2 * stencil + 1
        self.drift_net = _Ensemble(self.members, width, self.hidden, 1, gen)
        self.diff_net = _Ensemble(self.members, width, self.hidden, 1, gen)
        f64 = dict(dtype=torch.float64)
        # One scaling for all sites (translation equivariance).
        for name, v in (("x_mean", 0.0), ("x_scale", 1.0), ("u_mean", 0.0), ("u_scale", 1.0), ("s_scale", 1.0)):
            self.register_buffer(name, torch.tensor(v, **f64))
        offsets = np.arange(-stencil, stencil + 1)
        cols = (np.arange(sites)[:, None] + offsets[None, :]) % sites  # (K, 2s+1): site k's neighbourhood
        self.register_buffer("_cols", torch.as_tensor(cols, dtype=torch.long), persistent=False)
        self.provenance: dict[str, Any] = {}

    # ------------------------------------------------------------------ parts
    def set_scaling(self, x_mean: float, x_scale: float, u_mean: float, u_scale: float, s_scale: float) -> None:
        """Set the one scaling shared by every site: inputs ``(x - x_mean) / x_scale``, closure
        ``u_mean + u_scale * net``, noise ``s_scale * softplus(...)`` (slow units, per time)."""
        for name, v in (("x_mean", x_mean), ("x_scale", x_scale), ("u_mean", u_mean), ("u_scale", u_scale),
                        ("s_scale", s_scale)):
            if name in ("x_scale", "u_scale", "s_scale") and not (math.isfinite(v) and v > 0):
                raise ValueError(f"{name}={v!r} must be positive and finite")
            getattr(self, name).fill_(float(v))

    def neighbourhoods(self, x: torch.Tensor) -> torch.Tensor:
        """``(..., K) -> (..., K, 2 s + 1)``: each site's standardised stencil inputs."""
        return (x[..., self._cols] - self.x_mean) / self.x_scale

    def resolved_drift(self, x: Any) -> Any:
        """``R(x)``, ``(N, K)`` (zeros without a resolved part): a tensor in its own dtype, or
        NumPy in and out (float64)."""
        if not isinstance(x, torch.Tensor):
            with torch.no_grad():
                return self.resolved_drift(torch.as_tensor(np.asarray(x, float))).numpy()
        if self._R is None:
            return torch.zeros_like(x)
        return self._R.slow_drift(x).to(x.dtype)

    def _parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Unresolved drift ``U`` and noise ``S_kk`` per member, each ``(E, N, K)``; ``x (N, K)``."""
        N, K = x.shape
        z = self.neighbourhoods(x).reshape(1, N * K, -1).expand(self.members, -1, -1)
        u = self.u_mean + self.u_scale * self.drift_net(z)[..., 0]
        s = self.s_scale * (torch.nn.functional.softplus(self.diff_net(z)[..., 0] + _SOFTPLUS_ONE) + 1e-6)
        return u.reshape(self.members, N, K), s.reshape(self.members, N, K)

    subset = EffectiveSDE.subset  # a copy holding some members: the same for both forms

    # ------------------------------------------------------------------ evaluation
    def _points(self, x: Any) -> tuple[torch.Tensor, bool]:
        np_in = not isinstance(x, torch.Tensor)
        t = torch.as_tensor(np.asarray(x, float) if np_in else x, dtype=self.x_mean.dtype)
        if t.ndim == 1:
            t = t[None]
        if t.ndim != 2 or t.shape[1] != self.sites:
            raise ValueError(f"x has shape {tuple(t.shape)}; expected (n, {self.sites})")
        return t, np_in

    def members_unresolved(self, x: Any) -> Any:
        """``U`` of every member, ``(members, n, K)``."""
        t, np_in = self._points(x)
        u, _ = self._parts(t)
        return u.detach().numpy() if np_in else u

    def members_drift(self, x: Any) -> Any:
        """Total drift ``R + U`` of every member, ``(members, n, K)``."""
        t, np_in = self._points(x)
        u, _ = self._parts(t)
        b = self.resolved_drift(t) + u
        return b.detach().numpy() if np_in else b

    def members_diffusion(self, x: Any) -> Any:
        """Diagonal diffusion ``A = S^2`` of every member, ``(members, n, K, K)``."""
        t, np_in = self._points(x)
        _, s = self._parts(t)
        A = torch.diag_embed(s * s)
        return A.detach().numpy() if np_in else A

    def drift(self, x: Any) -> Any:
        """Ensemble-mean total drift ``R + U``, ``(n, K)`` for ``x (n, K)``."""
        return self.members_drift(x).mean(0)

    def diffusion(self, x: Any) -> Any:
        """Ensemble-mean diagonal diffusion ``A = S S^T``, ``(n, K, K)``."""
        return self.members_diffusion(x).mean(0)

    def drift_spread(self, x: Any) -> Any:
        """The drift's uncertainty, ``(n, K)``: the member standard deviation times
        ``sqrt(1 + 1/members)`` (as :meth:`EffectiveSDE.drift_spread`)."""
        b = self.members_drift(x)
        f = math.sqrt(1.0 + 1.0 / self.members)
        return (b.std(0, ddof=1) if isinstance(b, np.ndarray) else b.std(0, correction=1)) * f

    # ------------------------------------------------------------------ simulation (torch reference)
    @torch.no_grad()
    def simulate_torch(self, *, t_end: float, dt: float, x0: Any, seed: int = 0, member: int | str | None = "sample",
                       save_every: int = 1) -> np.ndarray:
        """Euler-Maruyama in torch (the reference the compiled :meth:`simulate` is tested against),
        with the surrogate stream's Philox normals keyed by (seed, path, step): ``x0 (n_paths, K)``;
        returns ``(n_paths, saves, K)``. ``member="sample"``: path ``p`` follows member
        ``p mod members``."""
        from .. import _core
        from .._streams import Stream
        from ._local_kernel import check_arguments

        xs, dt, n_steps, save_every, _ = check_arguments(self, t_end=t_end, dt=dt, x0=x0, member=member,
                                                         save_every=save_every)
        x = torch.as_tensor(xs)
        P, K = x.shape
        sel = torch.arange(P) % self.members if member == "sample" else None
        out = [x.numpy().copy()]
        sq = math.sqrt(dt)
        for step in range(1, n_steps + 1):
            u, s = self._parts(x)
            if sel is not None:
                u, s = u[sel, torch.arange(P)], s[sel, torch.arange(P)]
            elif member is None:
                u, s = u.mean(0), (s * s).mean(0).sqrt()
            else:
                u, s = u[int(member)], s[int(member)]
            xi = torch.as_tensor(_core.normals(seed=seed, path0=0, n_paths=P, step=step - 1, n=K, single=False,
                                               stream=Stream.SURROGATE))
            x = x + (self.resolved_drift(x) + u) * dt + sq * s * xi
            if step % save_every == 0:
                out.append(x.numpy().copy())
        return np.stack(out, 1)

    def simulate(self, *, t_end: float, dt: float, x0: Any, seed: int = 0, member: int | str | None = "sample",
                 save_every: int = 1, threads: int | None = None, precision: Any = Precision.FLOAT64) -> np.ndarray:
        """Euler-Maruyama in the compiled kernel (``models/local_surrogate.h``): paths in SIMD
        lanes, every site's stencil through the shared networks, ``R`` compiled just in time
        from the model language (cached on disk). The noise is :meth:`simulate_torch`'s, so the
        two agree to rounding (float64).

        Parameters
        ----------
        t_end, dt : float
            Final time and step (model time units); ``t_end`` must be a multiple of ``dt``.
        x0 : array (n_paths, K) or (K,)
            Initial states; finite.
        seed : int
            Philox normals keyed by (seed, path, step) on the surrogate stream, normal index =
            site: the numbers depend on neither threads nor chunking.
        member : None, int or "sample"
            ``None``: the ensemble mean (``U`` = mean ``U_e``, ``S`` = sqrt(mean ``S_e^2``));
            ``k``: member ``k``; ``"sample"``: path ``p`` follows member ``p mod members``.
        save_every : int
            Store every ``save_every``-th step (and ``t = 0``).
        threads : int, optional
            CPU threads (default: all cores).
        precision : {"float64", "float32"} or multiscale.Precision
            Kernel arithmetic; float32 is about twice as fast (same noise keys, float32 normals).

        Returns
        -------
        numpy.ndarray
            ``(n_paths, saves, K)`` float64, ``saves = n_steps // save_every + 1``.

        Raises
        ------
        ValueError
            Bad arguments (named with their value).
        multiscale.SimulationError
            A path became non-finite (named with its step and last finite state; the arrays
            ride along as ``trajectory`` and ``status``).

        Notes
        -----
        Paths run in blocks of 16 (float64) or 32 (float32) SIMD lanes that share one member:
        with ``member="sample"``, ``n_paths`` a multiple of ``members`` x lanes fills them all.
        """
        from ._local_kernel import simulate

        return simulate(self, t_end=t_end, dt=dt, x0=x0, seed=seed, member=member, save_every=save_every,
                        threads=threads, precision=precision)

    # ------------------------------------------------------------------ serialisation
    def config(self) -> dict[str, Any]:
        """The architecture, names, resolved model (its ``to_dict``) and provenance, JSON-ready."""
        return {"format": "multiscale.LocalEffectiveSDE", "format_version": 1, "sites": self.sites,
                "stencil": self.stencil, "members": self.members, "hidden": list(self.hidden),
                "names": list(self.names), "seed": self.seed, "activation": "tanh",
                "resolved": None if self.resolved is None else self.resolved.to_dict(),
                "resolved_params": self.resolved_params, "provenance": self.provenance}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and scaling buffer as a float64 array (the files' arrays)."""
        return {k: v.detach().cpu().numpy().astype(np.float64, copy=True) for k, v in self.state_dict().items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "LocalEffectiveSDE":
        """Rebuild a model from :meth:`config` and :meth:`state_arrays` (arrays checked by name)."""
        from ..models import Model

        resolved = Model.from_dict(config["resolved"]) if config.get("resolved") else None
        model = cls(int(config["sites"]), stencil=int(config["stencil"]), members=int(config["members"]),
                    hidden=tuple(config["hidden"]), resolved=resolved,
                    resolved_params=config.get("resolved_params") or {}, names=config["names"],
                    seed=int(config["seed"]))
        expected = model.state_dict()
        if set(arrays) != set(expected):
            raise ValueError(f"arrays do not match the architecture: {sorted(set(expected) ^ set(arrays))}")
        model.load_state_dict({k: torch.tensor(np.asarray(arrays[k]), dtype=v.dtype) for k, v in expected.items()})
        model.provenance = dict(config.get("provenance", {}))
        return model

    def to_json(self) -> str:
        """:meth:`config` as a JSON string."""
        return json.dumps(self.config())


class LocalClosureEstimator:
    """Learn the local closure ``U``, ``S`` of a :class:`LocalEffectiveSDE`.

    ``fit`` takes either of the two data pathways:

    * coarse trajectories of the ring (a simulation dataset, whose slow states are modelled, or an
      array ``(paths, times, K)`` with ``dt``): every site of every transition pair is a sample
      of the shared networks. Without ``lag=`` the lag rule of :class:`EffectiveSDEEstimator`
      runs on the data: where it finds a lag at which the increments look like a diffusion, the
      configured method fits there (``MULTISCALE``: lags ``D`` and ``2 D`` with a learned
      lag-independent fast variance ``C`` per member, an Euler warm-up, then the second-order
      moments with the banded ``K x K`` covariance); where it finds none (ballistic slow
      increments, as in two-scale Lorenz-96) the closure is fitted as a drift by the Euler
      likelihood at the shortest lag. ``summary_["method"]`` and ``summary_["lag_rule"]`` say which;
    * frozen-X averaging estimates at scattered slow states (an :class:`AveragingEstimator`
      result with ``x (point, slow)``): weighted least squares of ``U = F - R(x)`` with the
      estimates' standard errors, each member on its own parametric-bootstrap copy.

    Parameters
    ----------
    options : SurrogateOptions
        Ensemble size, architecture, epochs, method, seed, threads and workers.
    structure : RingClosure
        Stencil and the resolved part ``R``.
    """

    def __init__(self, options: Any = None, structure: RingClosure | None = None) -> None:
        from ._options import SurrogateOptions

        self.options = options if options is not None else SurrogateOptions()
        self.structure = structure if structure is not None else RingClosure()
        if not isinstance(self.options, SurrogateOptions):
            raise ValueError(f"options={options!r} must be a multiscale.SurrogateOptions")
        if not isinstance(self.structure, RingClosure):
            raise ValueError(f"structure={structure!r} must be a multiscale.surrogate.RingClosure")

    def fetch_model(self) -> LocalEffectiveSDE:
        """The fitted :class:`LocalEffectiveSDE` (after :meth:`fit`)."""
        if not hasattr(self, "model_"):
            raise RuntimeError("call fit(...) first")
        return self.model_

    def fit(self, data: Any, *, dt: float | None = None, lag: float | None = None,
            variables: Any = None) -> "LocalClosureEstimator":
        """Fit the closure; returns ``self`` (``model_``, ``summary_``, ``history_``).

        Parameters
        ----------
        data : xarray.Dataset or array
            A simulation dataset (``trajectory``; its slow states, or ``variables``), an array
            ``(paths, times, K)`` sampled every ``dt``, or an averaging result at scattered
            slow states (``x``, ``F``, ``F_stderr``, ``A``).
        dt : float, optional
            Sampling interval of an array (model time units).
        lag : float, optional
            Transition lag, a multiple of the sampling interval (default: the lag rule's, see
            the class docstring).
        variables : list of str, optional
            The ring's states in a dataset (default: its slow states).
        """
        import xarray as xr

        from .._checks import positive_finite
        from ._train import _slow_names

        names = None
        if isinstance(data, xr.Dataset) and "x" in data.coords and ("closure" in data or "F" in data):
            if lag is not None or dt is not None:
                raise ValueError("lag and dt apply to trajectories, not to averaged estimates")
            return self._fit_estimates(data)
        if isinstance(data, xr.Dataset):
            states = [str(s) for s in data["state"].values]
            names = list(variables) if variables is not None else _slow_names(data, states)
            arr = data["trajectory"].sel(state=names).transpose("realization", "time", "state").values
            t = data["time"].values
            if t.size < 3:
                raise ValueError(f"the dataset has {t.size} time samples; trajectories need at least 3")
            dt = float(f"{float(t[1] - t[0]):.12g}")  # the saved times' rounding, not the interval's
        else:
            arr = np.asarray(data, float)
            if dt is None:
                raise ValueError("dt (the sampling interval of the trajectory array) is required")
            names = list(variables) if variables is not None else None
        if arr.ndim == 2:
            arr = arr[None]
        if arr.ndim != 3 or not np.all(np.isfinite(arr)):
            raise ValueError(f"trajectories must be a finite (paths, times, K) array; got shape {arr.shape}")
        h = positive_finite("dt", dt)
        method, rule = self.options.method, None
        if lag is None:
            k, method, rule = self._choose(arr, h)
        else:
            k = int(round(positive_finite("lag", lag) / h))
            if k < 1 or abs(k * h - lag) > 1e-9 * lag:
                raise ValueError(f"lag={lag!r} is not a multiple of the sampling interval {h!r}")
        return self._fit_trajectories(arr, h, k, names, method, rule)

    def _choose(self, arr: np.ndarray, h: float) -> tuple[int, Any, dict[str, Any]]:
        """The lag rule of :class:`EffectiveSDEEstimator` on the ring's data, and the method.

        Where the ladder finds a lag at which the increments look like a diffusion, that lag and
        the configured method. Where it finds none, the slow increments are ballistic over every
        lag the data resolve (their variance grows like ``lag^2``; two-scale Lorenz-96, whose fast
        variables are deterministic chaos, is the example): the two-lag split into a fast variance
        ``C`` and a diffusion ``A`` has no meaning there, so the closure is fitted as a drift
        (``EULER``) at the shortest lag, with the small noise that the residuals carry.
        """
        from ._options import TrajectoryMethod
        from ._train import _lag_rule, _rule_info, lag_ladder

        # The first 50k snapshots suffice for the ladder's variances (it costs seconds per 1e5).
        ladder = lag_ladder(arr[:, :max(64, 50_000 // arr.shape[0])], h, seed=self.options.seed)
        k, rule = _lag_rule(ladder)
        info = _rule_info(ladder, rule, h)
        if rule["reliable"]:
            info["method_reason"] = "the lag rule's lag, with the configured method"
            return k, self.options.method, info
        info["method_reason"] = ("no lag on the ladder where the increments look like a diffusion (ballistic "
                                 "slow increments): a drift closure fitted at the shortest lag (EULER)")
        return 1, TrajectoryMethod.EULER, info

    def _fit_estimates(self, ds: Any) -> "LocalClosureEstimator":
        """Weighted least squares of ``U = F - R(x)`` at scattered slow points ``x (n, K)`` (an
        :class:`AveragingEstimator` result), every site a sample; each member fits its own
        parametric-bootstrap copy. The noise network is fitted to ``A``'s diagonal where it is
        positive; a deterministic closure (``A = 0``) keeps a fixed small noise."""
        import time

        from ._train import EffectiveSDEEstimator, _split

        o, st = self.options, self.structure
        x = np.asarray(ds["x"].values, float)
        n, K = x.shape
        E = o.members
        names = [str(v) for v in ds["slow"].values] if "slow" in ds.coords else None
        model = LocalEffectiveSDE(K, stencil=st.stencil, members=E, hidden=o.hidden, resolved=st.resolved,
                                  resolved_params=st.params, names=names, seed=o.seed)
        R = model.resolved_drift(x)
        U = (np.asarray(ds["F"].values, float) - R) if "F" in ds else np.asarray(ds["closure"].values, float)
        se = np.asarray(ds["F_stderr"].values, float) if "F_stderr" in ds else np.ones_like(U)
        A = np.diagonal(np.asarray(ds["A"].values, float), axis1=1, axis2=2) if "A" in ds else np.zeros_like(U)
        ok = np.all(np.isfinite(U), 1) & np.all(np.isfinite(x), 1)
        if "converged" in ds:
            ok &= ds["converged"].values.astype(bool)
        x, U, se, A = x[ok], U[ok], se[ok], A[ok]
        n = x.shape[0]
        if n < 4:
            raise ValueError(f"only {n} usable points (finite, converged); at least 4 are needed")
        u_scale = float(max(U.std(), 1e-12))
        se = np.maximum(np.where(np.isfinite(se) & (se > 0), se, 0.0), 1e-3 * u_scale)
        stochastic = bool(np.all(A > 0))
        model.set_scaling(float(x.mean()), float(max(x.std(), 1e-12)), float(U.mean()), u_scale,
                          math.sqrt(float(A.mean())) if stochastic else 1e-3 * u_scale)
        rng = np.random.default_rng([o.seed, 1])
        Ut = np.broadcast_to(U, (E, n, K)).copy()
        if o.bootstrap:
            Ut += se * rng.standard_normal((E, n, K))
        val = _split(rng, E, n, o.validation_fraction) if n >= 10 else np.zeros((E, n), bool)
        tx, tU, tw = torch.as_tensor(x), torch.as_tensor(Ut), torch.as_tensor(1.0 / se**2)
        tA = torch.as_tensor(A)
        train_w, val_w = torch.as_tensor((~val).astype(float)), torch.as_tensor(val.astype(float))

        def losses(weights: torch.Tensor) -> torch.Tensor:
            u, s = model._parts(tx)
            chi = ((u - tU) ** 2 * tw).sum(-1)
            if stochastic:
                chi = chi + ((s * s - tA) ** 2 / (0.1 * tA + 1e-12) ** 2).sum(-1)
            return (chi * weights).sum(1) / weights.sum(1).clamp_min(1.0) / K

        trainer = EffectiveSDEEstimator(o)
        t0 = time.perf_counter()
        prev = torch.get_num_threads()
        if o.threads is not None:
            torch.set_num_threads(o.threads)
        try:
            trainer._set_training(trainer._train(model, losses, train_w, val_w if val.any() else None,
                                                 full_batch=True))
        finally:
            torch.set_num_threads(prev)
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model_, self.history_, self.lag_ = model, trainer.history_, None
        self.summary_ = {"pathway": "estimates", "n_points": int(n), "site_samples": int(n * K),
                         "stochastic": stochastic, "epochs": trainer._epochs, "seconds": time.perf_counter() - t0,
                         "validation_loss": trainer._best_val}
        model.provenance = {"pathway": "estimates", "n_points": int(n)}
        return self

    def _fit_trajectories(self, arr: np.ndarray, h: float, k: int, names: Any, method: Any,
                          rule: dict[str, Any] | None) -> "LocalClosureEstimator":
        import time

        from ._train import EffectiveSDEEstimator, _split, gaussian_nll, transition_pairs, weighted_mean_loss

        o, st = self.options, self.structure
        P, T, K = arr.shape
        from ._options import TrajectoryMethod

        two_lags = method is TrajectoryMethod.MULTISCALE
        if (2 if two_lags else 1) * k >= T:
            raise ValueError(f"lag {k * h!r} needs more samples per path; the data have {T}")
        E = o.members
        model = LocalEffectiveSDE(K, stencil=st.stencil, members=E, hidden=o.hidden, resolved=st.resolved,
                                  resolved_params=st.params, names=names, seed=o.seed)
        lagt = k * h
        n_blocks = 10
        X0, dX, L, blk, _ = transition_pairs(arr, k, lagt, 2 if two_lags else 1, n_blocks)
        # Scaling: one for every site. The unresolved drift's scale from a linear fit of the
        # increments' rate minus R on the stencil inputs; the noise from the residuals.
        R0 = model.resolved_drift(X0[:200_000])
        x_mean, x_std = float(X0.mean()), float(max(X0.std(), 1e-12))
        sel = L[:len(R0)] == lagt
        target = (dX[:len(R0)][sel] / lagt - R0[sel]).ravel()
        feats = ((X0[:len(R0)][sel][:, model._cols.numpy()] - x_mean) / x_std).reshape(-1, 2 * st.stencil + 1)
        feats = np.concatenate([np.ones((feats.shape[0], 1)), feats], 1)
        coef, *_ = np.linalg.lstsq(feats, target, rcond=None)
        pred = feats @ coef
        res_var = float(np.mean((target - pred) ** 2)) * lagt**2  # variance of an increment at the lag
        # The closure's scale: the linear fit's spread, or a tenth of the target's where the closure
        # has no linear part in the stencil (an even function of X_k), so the output never collapses.
        u_scale = max(float(pred.std()), 0.1 * float(target.std()), 1e-3 * abs(float(pred.mean())) + 1e-9)
        model.set_scaling(x_mean, x_std, float(pred.mean()), u_scale, math.sqrt(max(res_var / lagt, 1e-300)))
        rng = np.random.default_rng([o.seed, 2])
        w_path = rng.poisson(1.0, (E, P)).astype(float) if o.bootstrap else np.ones((E, P))
        held = _split(rng, E, P * n_blocks, o.validation_fraction) if P * n_blocks >= 10 \
            else np.zeros((E, P * n_blocks), bool)
        fdt = torch.float32 if o.precision.value == "float32" else torch.float64
        train_w = torch.as_tensor(np.where(held[:, blk], 0.0, w_path[:, blk // n_blocks]), dtype=fdt)
        val_w = torch.as_tensor(held[:, blk].astype(float), dtype=fdt)
        tX0, tdX, tL = (torch.as_tensor(v, dtype=fdt) for v in (X0, dX, L))
        with torch.no_grad():  # R at every start point, once (it does not depend on the parameters)
            tR = torch.cat([model.resolved_drift(c.double()).to(fdt) for c in torch.split(tX0, 65536)])
        n_pairs = tX0.shape[0]
        eval_idx = torch.as_tensor(np.sort(rng.permutation(n_pairs)[:min(n_pairs, max(1, 16384 // K))]))
        # Batches count site rows (each snapshot is K samples of the shared networks).
        o = dataclasses.replace(o, batch_size=max(1, o.batch_size // K))
        c0 = 0.01 * res_var

        switch_at = max(1, int(round(o.euler_warmup * o.epochs))) if two_lags and o.euler_warmup > 0 else None

        def make_loss(net: LocalEffectiveSDE, fcov: torch.nn.Parameter):
            phase = {"order": 1 if (switch_at or not two_lags) else 2}

            def sums(idx: torch.Tensor, weights: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                xb, db, lb, wb = tX0[idx], tdX[idx], tL[idx], weights[:, idx]
                C = c0 * torch.exp(fcov)[:, None, None] if two_lags else 0.0
                if phase["order"] == 1:  # diagonal: a sum of scalar Gaussians over the sites
                    u, s = net._parts(xb)
                    mu = (tR[idx] + u) * lb[:, None]
                    var = s * s * lb[:, None] + C
                    per = 0.5 * (torch.log(var) + (db - mu) ** 2 / var + math.log(2 * math.pi)).sum(-1)
                    return (per * wb).sum(1), wb.sum(1)
                with torch.no_grad():
                    jets = resolved_jets(net, xb)
                mu, cov = local_moments(net, xb, lb, 2, jets)
                cov = cov + (C[..., None] * torch.eye(K, dtype=fdt) if two_lags else 0.0)
                eye = torch.eye(K, dtype=fdt)
                per = gaussian_nll(db - mu, cov, lambda: local_moments(net, xb, lb, 1, jets)[1]
                                   + (C[..., None] * eye if two_lags else 0.0))
                return (per * wb).sum(1), wb.sum(1)

            def nll(idx: torch.Tensor | None, weights: torch.Tensor) -> torch.Tensor:
                return weighted_mean_loss(sums, idx, weights, eval_idx, o.batch_size) / K

            return nll, (lambda: phase.update(order=2)), None

        fast = torch.nn.Parameter(torch.zeros(E, dtype=fdt))
        trainer = EffectiveSDEEstimator(o)
        t0 = time.perf_counter()
        buffers = {n: v.clone() for n, v in model.named_buffers()}
        model.to(fdt)
        prev = torch.get_num_threads()
        if o.threads is not None:
            torch.set_num_threads(o.threads)
        try:
            trainer._train_groups(model, make_loss, fast, train_w, val_w if held.any() else None,
                                  n_data=n_pairs, rng=rng, switch_at=switch_at)
        finally:
            torch.set_num_threads(prev)
            model.to(torch.float64)
            with torch.no_grad():
                for n, v in model.named_buffers():
                    if n in buffers:
                        v.copy_(buffers[n])
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model_ = model
        self.history_ = trainer.history_
        self.lag_ = lagt
        self.summary_ = {"pathway": "trajectories", "epochs": trainer._epochs, "seconds": time.perf_counter() - t0,
                         "n_pairs": int(n_pairs), "site_samples": int(n_pairs * K), "lag": lagt,
                         "fast_scale_variance": float((c0 * torch.exp(fast.detach().double())).mean())
                         if two_lags else 0.0, "method": method.name, "lag_rule": rule,
                         "validation_loss": trainer._best_val}
        model.provenance = {"pathway": "trajectories", "lag": lagt, "n_pairs": int(n_pairs), "method": method.name,
                            "lag_rule": rule}
        return self


_FORWARD_AD = threading.Lock()  # torch's forward-mode AD levels are not thread-safe


def resolved_jets(model: LocalEffectiveSDE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``R (N, K)``, its Jacobian ``J_R (N, K, K)`` and the diagonal second derivatives
    ``d2R[n, k, j] = d^2 R_k / dx_j^2`` by forward-mode AD through the model language (K passes)."""
    with _FORWARD_AD:
        if model._R is not None:
            with warnings.catch_warnings():  # torch loads its forward-mode rules through torch.jit once
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.autograd.forward_ad._maybe_load_decompositions()
        return _resolved_jets(model, x)


def _resolved_jets(model: LocalEffectiveSDE, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    N, K = x.shape
    if model._R is None:
        z = x.new_zeros(N, K)
        return z, x.new_zeros(N, K, K), x.new_zeros(N, K, K)
    R = model.resolved_drift
    cols, d2 = [], []
    for j in range(K):
        e = torch.zeros_like(x)
        e[:, j] = 1
        cols.append(torch.func.jvp(R, (x,), (e,))[1])
        d2.append(torch.func.jvp(lambda y: torch.func.jvp(R, (y,), (e,))[1], (x,), (e,))[1])
    return R(x), torch.stack(cols, -1), torch.stack(d2, -1)


def local_moments(model: LocalEffectiveSDE, x: torch.Tensor, lag: torch.Tensor, order: int,
                  resolved: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean ``(E, N, K)`` and covariance ``(E, N, K, K)`` of ``X_lag - x`` per member.

    ``order=1``: Euler, ``b lag`` and ``diag(A) lag``. ``order=2``: the second-order (Kessler)
    expansion (see :func:`member_moments`), with the local networks' derivatives in their
    ``2 s + 1`` inputs (Taylor mode) mapped to ring indices; the covariance is then banded.
    ``resolved``: :func:`resolved_jets` at ``x``.
    """
    E, (N, K) = model.members, x.shape
    R, JR, d2R = resolved
    lb = lag[:, None]
    w = 2 * model.stencil + 1
    z = model.neighbourhoods(x).reshape(1, N * K, w).expand(E, -1, -1)
    if order == 1:
        u, s = model._parts(x)
        return (R + u) * lb, torch.diag_embed(s * s * lb)
    dz = torch.eye(w, dtype=x.dtype) / model.x_scale
    o, do, d2o = model.drift_net.jet(z, dz, diagonal=True)
    u = (model.u_mean + model.u_scale * o[..., 0]).reshape(E, N, K)
    du = (model.u_scale * do[..., 0]).reshape(E, N, K, w)
    d2u = (model.u_scale * d2o[..., 0]).reshape(E, N, K, w)
    r, dr, d2r = model.diff_net.jet(z, dz, diagonal=True)
    sg = torch.sigmoid(r[..., 0] + _SOFTPLUS_ONE)
    s = model.s_scale * (torch.nn.functional.softplus(r[..., 0] + _SOFTPLUS_ONE) + 1e-6)
    ds = model.s_scale * sg[..., None] * dr[..., 0]
    d2s = model.s_scale * ((sg * (1 - sg))[..., None] * dr[..., 0] ** 2
                           + sg[..., None] * d2r[..., 0])
    s, ds, d2s = s.reshape(E, N, K), ds.reshape(E, N, K, w), d2s.reshape(E, N, K, w)
    A = s * s
    dA, d2A = 2 * s[..., None] * ds, 2 * (ds * ds + s[..., None] * d2s)
    cols = model._cols  # (K, w): the ring index of each stencil slot
    b = R + u
    bg, Ag = b[..., cols], A[..., cols]  # (E, N, K, w): b and A at each site's neighbours
    # Full Jacobian: the resolved part plus the local networks' stencil derivatives.
    J = JR.expand(E, N, K, K).clone()
    J.scatter_add_(-1, cols.expand(E, N, K, w), du)
    Lb = (J @ b[..., None])[..., 0] + 0.5 * (d2R * A[:, :, None, :]).sum(-1) + 0.5 * (d2u * Ag).sum(-1)
    JA = J * A[:, :, None, :]
    LA = JA + JA.transpose(-1, -2) + torch.diag_embed((dA * bg).sum(-1) + 0.5 * (d2A * Ag).sum(-1))
    mean = b * lb + Lb * (0.5 * lb**2)
    cov = torch.diag_embed(A * lb) + LA * (0.5 * lb[..., None] ** 2)
    return mean, cov
