"""The learned effective SDE ``dX = b(X) dt + S(X) dW``: a deep ensemble of small MLPs.

All members live in one batched network (weights of shape ``(members, fan_in, fan_out)``), so an
ensemble costs one ``baddbmm`` per layer. Inputs are standardised with the data's mean and
scale, and outputs are scaled by the data's drift and diffusion magnitudes, so the networks see
O(1) numbers whatever the units.
"""
from __future__ import annotations

import copy
import datetime as _dt
import json
import math
from typing import Any, Mapping

import numpy as np
import torch
import xarray as xr

from .. import _core
from .._checks import integer, positive_finite
from .._checks import seed as check_seed
from .._device import build_info
from .._status import STATUS_MEANINGS, Status  # the registries: status.h and rng/streams.h
from .._streams import Stream
from ._options import DiffusionForm

_SOFTPLUS_ONE = math.log(math.e - 1.0)  # softplus(_SOFTPLUS_ONE) = 1
FORMAT_VERSION = 1


class _TanhJet(torch.autograd.Function):
    """``tanh`` with its first and second derivatives along ``m`` directions, fused in the
    compiled kernel (``surrogate/tanh_jet.h``): one pass over each array forward and backward,
    where torch takes about ten (the second-order step is memory-bound)."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, da: torch.Tensor, d2a: torch.Tensor | None):
        n = torch.get_num_threads()
        a, da = a.detach().contiguous(), da.detach().contiguous()
        d2a = None if d2a is None else d2a.detach().contiguous()
        t, dh, d2h = (torch.from_numpy(v) for v in _core.tanh_jet(
            a=a.numpy(), da=da.numpy(), d2a=None if d2a is None else d2a.numpy(), threads=n))
        ctx.save_for_backward(t, da, d2a)
        return t, dh, d2h

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gt: torch.Tensor, gdh: torch.Tensor, gd2h: torch.Tensor):
        t, da, d2a = ctx.saved_tensors
        gt, gdh, gd2h = (g.contiguous() for g in (gt, gdh, gd2h))
        ga, gda, gd2a = _core.tanh_jet_backward(
            t=t.numpy(), da=da.numpy(), d2a=None if d2a is None else d2a.numpy(), gt=gt.numpy(),
            gdh=gdh.numpy(), gd2h=gd2h.numpy(), threads=torch.get_num_threads())
        return torch.from_numpy(ga), torch.from_numpy(gda), None if gd2a is None else torch.from_numpy(gd2a)


def tanh_jet(a: torch.Tensor, da: torch.Tensor,
             d2a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``h = tanh(a)`` and its derivatives ``dh (..., m, w)``, ``d2h (..., m, m, w)`` from those of
    ``a`` (``d2a=None``: zero). CPU float32/float64 tensors go through the fused kernel, others
    (CUDA) through the same formulas in torch. The fused kernel's backward is not itself
    differentiable (training needs parameter gradients only)."""
    if a.device.type == "cpu" and a.dtype in (torch.float32, torch.float64) \
            and da.dtype == a.dtype and (d2a is None or d2a.dtype == a.dtype):
        return _TanhJet.apply(a, da, d2a)
    return tanh_jet_torch(a, da, d2a)


def tanh_jet_torch(a: torch.Tensor, da: torch.Tensor,
                   d2a: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`tanh_jet` in torch operations (any device; differentiable to any order)."""
    t = torch.tanh(a)
    t1 = 1 - t * t
    t2 = -2 * t * t1
    dh = t1[..., None, :] * da
    d2h = t2[..., None, None, :] * da[..., :, None, :] * da[..., None, :, :]
    if d2a is not None:
        d2h = d2h + t1[..., None, None, :] * d2a
    return t, dh, d2h


class _Ensemble(torch.nn.Module):
    """``members`` independent tanh MLPs evaluated as one batch: ``(E, N, n_in) -> (E, N, n_out)``."""

    def __init__(self, members: int, n_in: int, hidden: tuple[int, ...], n_out: int,
                 generator: torch.Generator | None) -> None:
        super().__init__()
        sizes = (n_in, *hidden, n_out)
        self.weights = torch.nn.ParameterList()
        self.biases = torch.nn.ParameterList()
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            w = torch.randn(members, a, b, generator=generator, dtype=torch.float64) / math.sqrt(a)
            if i == len(sizes) - 2:
                w = w * 0.1  # start near the data-scaled mean, not at a random O(1) function
            # Random first-layer offsets spread the tanh kinks over the input range; they also
            # make the members differ where there is no data (the ensemble's spread there).
            bias = (torch.rand(members, 1, b, generator=generator, dtype=torch.float64) * 2 - 1) * 1.5 \
                if i == 0 else torch.zeros(members, 1, b, dtype=torch.float64)
            self.weights.append(torch.nn.Parameter(w))
            self.biases.append(torch.nn.Parameter(bias))

    def jet(self, z: torch.Tensor, dz: torch.Tensor,
            diagonal: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Value, first and second input derivatives, propagated layer by layer (Taylor mode).

        ``z (E, N, n_in)`` is an affine function of the state with constant Jacobian
        ``dz (m, n_in)``. Returns ``(E, N, n_out)``, ``(E, N, m, n_out)`` and
        ``(E, N, m, m, n_out)``; cheaper than nested autograd by a large factor.
        ``diagonal``: only the pure second derivatives along each direction, ``(E, N, m, n_out)``
        (a diagonal diffusion needs no mixed ones; ``m`` times cheaper).
        """
        E, N, _ = z.shape
        m = dz.shape[0]
        h, dh, d2h = z, dz.expand(E, N, *dz.shape), None
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            a = torch.baddbmm(b, h, w)
            da = (dh.reshape(E, N * m, -1) @ w).reshape(E, N, m, -1)
            d2a = None
            if d2h is not None:
                d2a = (d2h.reshape(E, -1, d2h.shape[-1]) @ w).reshape(*d2h.shape[:-1], -1)
            if i == n - 1:
                h, dh, d2h = a, da, d2a
                break
            if diagonal:  # each direction on its own: the one-direction jet on rows (n, direction)
                w_ = a.shape[-1]
                t, dh, d2h = tanh_jet(a[:, :, None, :].expand(E, N, m, w_).reshape(E, N * m, w_),
                                      da.reshape(E, N * m, 1, w_),
                                      None if d2a is None else d2a.reshape(E, N * m, 1, 1, w_))
                h, dh, d2h = t.reshape(E, N, m, w_)[:, :, 0], dh.reshape(E, N, m, w_), d2h.reshape(E, N, m, w_)
            else:
                h, dh, d2h = tanh_jet(a, da, d2a)
        if d2h is None:
            d2h = h.new_zeros(E, N, m, h.shape[-1]) if diagonal else h.new_zeros(E, N, m, m, h.shape[-1])
        return h, dh, d2h

    def forward(self, h: torch.Tensor, sel: list[int] | None = None) -> torch.Tensor:
        """``h (E', N, n_in)``: inputs per member (all members, or the members ``sel``)."""
        n = len(self.weights)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            if sel is not None:
                w, b = w[sel], b[sel]
            h = torch.baddbmm(b, h, w)
            if i < n - 1:
                h = torch.tanh(h)
        return h


def _as_points(x: Any, m: int, like: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Points as a float64 tensor ``(N, m)``; second value: whether the input was NumPy."""
    is_numpy = not isinstance(x, torch.Tensor)
    t = torch.as_tensor(np.asarray(x, dtype=float) if is_numpy else x, dtype=like.dtype)
    t = t.to(like.device)
    if t.ndim == 0:
        t = t.reshape(1, 1) if m == 1 else t
    if t.ndim == 1:
        t = t[:, None] if m == 1 else (t[None, :] if t.shape[0] == m else t)
    if t.ndim != 2 or t.shape[1] != m:
        raise ValueError(f"x has shape {tuple(np.shape(x))}; expected (n, {m})" + (" or (n,)" if m == 1 else ""))
    return t, is_numpy


class EffectiveSDE(torch.nn.Module):
    """A learned effective SDE ``dX = b(X) dt + S(X) dW`` for ``m`` slow variables, as a deep ensemble.

    Usually created by :class:`EffectiveSDEEstimator` and restored by :func:`load_surrogate`.
    Every evaluation method takes NumPy arrays (returns NumPy) or torch tensors (returns
    differentiable torch tensors) of shape ``(n, m)`` (or ``(n,)`` when ``m == 1``).

    Parameters
    ----------
    dim : int
        Number of slow variables ``m``.
    members : int
    hidden : tuple of int
    diffusion : DiffusionForm
    gradient : bool
        Gradient structure ``b = -A grad U / 2 + div A / 2`` (invariant density ``exp(-U)/Z``).
    names : sequence of str, optional
        Slow variable names (default ``x``, or ``x0 .. x{m-1}``).
    seed : int
        Initialisation seed.

    Notes
    -----
    ``A = S S^T`` is the quadratic-variation rate (the generator is
    ``b . grad + A : grad grad / 2``). The ensemble mean of ``A`` over members is the
    surrogate's diffusion; its Cholesky factor is the noise used for ``member=None``.
    """

    sde_type = "ito"  # torchsde protocol
    noise_type = "general"

    def __init__(self, dim: int, *, members: int = 10, hidden: tuple[int, ...] = (48, 48),
                 diffusion: DiffusionForm = DiffusionForm.CHOLESKY, gradient: bool = False,
                 names: tuple[str, ...] | list[str] | None = None, seed: int = 0) -> None:
        super().__init__()
        if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= 64:
            raise ValueError(f"dim={dim!r} must be an integer in [1, 64]")
        if not isinstance(diffusion, DiffusionForm):
            raise ValueError(f"diffusion={diffusion!r} must be a multiscale.DiffusionForm")
        if isinstance(members, bool) or not isinstance(members, int) or not 1 <= members <= 1024:
            raise ValueError(f"members={members!r} must be an integer in [1, 1024]")
        if not isinstance(hidden, (tuple, list)) or not hidden or not all(
                isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 4096 for h in hidden):
            raise ValueError(f"hidden={hidden!r} must be a non-empty sequence of widths in [1, 4096]")
        sizes = (dim, *hidden, dim * (dim + 1) // 2)
        n_weights = 2 * members * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        if n_weights > 50_000_000:
            raise ValueError(f"members={members}, hidden={tuple(hidden)} gives {n_weights} weights (limit 5e7)")
        m = dim
        self.dim, self.members, self.hidden = m, int(members), tuple(int(h) for h in hidden)
        self.diffusion_form, self.gradient = diffusion, bool(gradient)
        names = tuple(names) if names is not None else (("x",) if m == 1 else tuple(f"x{i}" for i in range(m)))
        if len(names) != m or not all(isinstance(s, str) and s for s in names):
            raise ValueError(f"names={names!r} must be {m} non-empty strings")
        self.names = tuple(str(s) for s in names)
        self.seed = int(seed)
        gen = torch.Generator().manual_seed(int(seed) % 2**63)
        n_drift = 1 if gradient else m
        n_diff = {DiffusionForm.CHOLESKY: m * (m + 1) // 2, DiffusionForm.DIAGONAL: m,
                  DiffusionForm.SCALAR: 1}[diffusion]
        self.drift_net = _Ensemble(self.members, m, self.hidden, n_drift, gen)
        self.diff_net = _Ensemble(self.members, m, self.hidden, n_diff, gen)
        # Confinement of the potential (gradient structure): U grows like c |z|^4 / 4 outside
        # the data, so exp(-U) is normalisable whatever the network does there.
        self.confine = torch.nn.Parameter(torch.full((self.members,), -4.0, dtype=torch.float64))
        f64 = dict(dtype=torch.float64)
        self.register_buffer("x_mean", torch.zeros(m, **f64))
        self.register_buffer("x_scale", torch.ones(m, **f64))
        self.register_buffer("b_mean", torch.zeros(m, **f64))
        self.register_buffer("b_scale", torch.ones(m, **f64))
        self.register_buffer("s_scale", torch.ones(m, **f64))
        self.register_buffer("x_lo", torch.full((m,), -math.inf, **f64))
        self.register_buffer("x_hi", torch.full((m,), math.inf, **f64))
        tril = torch.tril_indices(m, m)
        self.register_buffer("_tril", tril, persistent=False)
        self.provenance: dict[str, Any] = {}
        self.units: dict[str, str] = {"state": "model state units", "time": "model time"}

    # ------------------------------------------------------------------ scaling and raw parts
    def set_scaling(self, x_mean: Any, x_scale: Any, b_mean: Any, b_scale: Any, s_scale: Any,
                    x_lo: Any = None, x_hi: Any = None) -> None:
        """Input and output scales (each ``(m,)``), fitted from the data by the estimator."""
        for name, v in (("x_mean", x_mean), ("x_scale", x_scale), ("b_mean", b_mean),
                        ("b_scale", b_scale), ("s_scale", s_scale), ("x_lo", x_lo), ("x_hi", x_hi)):
            if v is None:
                continue
            t = torch.as_tensor(np.broadcast_to(np.asarray(v, float), (self.dim,)).copy())
            if name not in ("x_mean", "b_mean", "x_lo", "x_hi") and not bool(torch.all(t > 0)):
                raise ValueError(f"{name}={v!r} must be positive")
            getattr(self, name).copy_(t)

    def _noise_factor(self, z: torch.Tensor, sel: list[int] | None = None) -> torch.Tensor:
        """``S`` per member from standardised inputs: ``(E, N, m) -> (E, N, m, m)``."""
        E, N, m = z.shape
        raw = self.diff_net(z, sel)
        form = self.diffusion_form
        if form is DiffusionForm.SCALAR:
            s = torch.nn.functional.softplus(raw[..., 0] + _SOFTPLUS_ONE) + 1e-6
            eye = torch.eye(m, dtype=z.dtype, device=z.device)
            return s[..., None, None] * (self.s_scale.mean() * eye)
        if form is DiffusionForm.DIAGONAL:
            d = torch.nn.functional.softplus(raw + _SOFTPLUS_ONE) + 1e-6
            return torch.diag_embed(d * self.s_scale)
        L = z.new_zeros(E, N, m, m)
        L[..., self._tril[0], self._tril[1]] = raw
        diag = torch.nn.functional.softplus(torch.diagonal(L, dim1=-2, dim2=-1) + _SOFTPLUS_ONE) + 1e-6
        L = torch.tril(L, -1) + torch.diag_embed(diag)
        return self.s_scale[:, None] * L

    def _potential_z(self, z: torch.Tensor, sel: list[int] | None = None) -> torch.Tensor:
        """Dimensionless potential ``U`` per member, ``(E, N, m) -> (E, N)``."""
        c = torch.nn.functional.softplus(self.confine if sel is None else self.confine[sel])[:, None]
        u = self.drift_net(z, sel)[..., 0]
        return self.u_scale() * (u + c * (z * z).sum(-1) ** 2 / 4)

    def u_scale(self) -> torch.Tensor:
        """Scale of ``U``: ``2 |b| |x| / A``, so ``grad U`` is O(1) in network units."""
        return 2.0 * (self.b_scale * self.x_scale / self.s_scale**2).mean()

    def _parts(self, x: torch.Tensor, need_grad: bool,
               sel: list[int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Drift ``(E, N, m)`` and noise factor ``(E, N, m, m)`` of every member at ``x``.

        ``x`` is ``(N, m)`` (the same points for every member) or ``(E', N, m)`` (points per
        member, for the members ``sel`` or all of them).
        """
        E = self.members if sel is None else len(sel)
        if x.ndim == 2:
            x = x.expand(E, *x.shape)
        if not self.gradient:
            z = (x - self.x_mean) / self.x_scale
            return self.b_mean + self.b_scale * self.drift_net(z, sel), self._noise_factor(z, sel)
        with torch.enable_grad():
            # Inputs per member: the gradient of the summed potential with respect to them is
            # every member's grad U at every point in one backward pass.
            xe = x.detach().clone().requires_grad_(True)
            z = (xe - self.x_mean) / self.x_scale
            S = self._noise_factor(z, sel)
            A = S @ S.transpose(-1, -2)
            U = self._potential_z(z, sel)
            gU = torch.autograd.grad(U.sum(), xe, create_graph=need_grad, retain_graph=True)[0]
            divA = torch.stack([sum(torch.autograd.grad(A[..., i, j].sum(), xe, create_graph=need_grad,
                                                        retain_graph=True)[0][..., j]
                                    for j in range(self.dim)) for i in range(self.dim)], dim=-1)
            b = -0.5 * (A @ gU[..., None])[..., 0] + 0.5 * divA
            if not need_grad:
                b, S = b.detach(), S.detach()
            return b, S

    def _jets(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Drift and diffusion with their first and second state derivatives, per member.

        Returns ``b (E,N,m)``, ``J (E,N,m,k)``, ``H_b (E,N,m,k,l)``, ``A (E,N,m,m)``,
        ``dA (E,N,m,m,k)``, ``H_A (E,N,m,m,k,l)`` (``k, l``: derivative directions).
        Not for the gradient structure (its drift already holds derivatives of ``U``).
        """
        E, m = self.members, self.dim
        z = ((x - self.x_mean) / self.x_scale).expand(E, *x.shape)
        dz = torch.diag(1.0 / self.x_scale)
        o, do, d2o = self.drift_net.jet(z, dz)
        b = self.b_mean + self.b_scale * o
        J = (self.b_scale * do).transpose(-1, -2)  # (E,N,m_out,k)
        Hb = (self.b_scale * d2o).permute(0, 1, 4, 2, 3)
        r, dr, d2r = self.diff_net.jet(z, dz)
        form = self.diffusion_form
        # S as a function of the raw outputs r: entries S_ij = c_ij * phi(r_q(ij)) (phi = softplus
        # on the diagonal, identity off it), so S's derivatives follow by the chain rule.
        if form is DiffusionForm.SCALAR:
            u = r[..., 0] + _SOFTPLUS_ONE
            sg = torch.sigmoid(u)
            c = self.s_scale.mean()
            eye = torch.eye(m, dtype=x.dtype, device=x.device)
            g1, g2 = dr[..., 0], d2r[..., 0]  # (E,N,k), (E,N,k,l)
            s0 = c * (torch.nn.functional.softplus(u) + 1e-6)
            s1 = c * sg[..., None] * g1
            s2 = c * ((sg * (1 - sg))[..., None, None] * g1[..., :, None] * g1[..., None, :]
                      + sg[..., None, None] * g2)
            S = s0[..., None, None] * eye
            dS = s1[..., None, None, :] * eye[..., None]
            d2S = s2[..., None, None, :, :] * eye[..., None, None]
        else:
            if form is DiffusionForm.DIAGONAL:
                rows = cols = torch.arange(m, device=x.device)
            else:
                rows, cols = self._tril[0], self._tril[1]
            diag = rows == cols
            u = r + _SOFTPLUS_ONE
            sg = torch.sigmoid(u)
            val = torch.where(diag, torch.nn.functional.softplus(u) + 1e-6, r)
            g1 = torch.where(diag, sg, torch.ones_like(sg))
            g2 = torch.where(diag, sg * (1 - sg), torch.zeros_like(sg))
            d1 = g1[:, :, None, :] * dr  # (E,N,k,q)
            d2 = g2[:, :, None, None, :] * dr[:, :, :, None, :] * dr[:, :, None, :, :] \
                + g1[:, :, None, None, :] * d2r
            Eb, N = r.shape[:2]
            S = x.new_zeros(Eb, N, m, m)
            dS = x.new_zeros(Eb, N, m, m, m)
            d2S = x.new_zeros(Eb, N, m, m, m, m)
            sc = self.s_scale[rows]
            S[:, :, rows, cols] = sc * val
            dS[:, :, rows, cols] = (sc * d1).permute(0, 1, 3, 2)
            d2S[:, :, rows, cols] = (sc * d2).permute(0, 1, 4, 2, 3)
        A = S @ S.transpose(-1, -2)
        dA = torch.einsum("enijk,enlj->enilk", dS, S)
        dA = dA + dA.transpose(2, 3)
        HA = torch.einsum("enijkl,enpj->enipkl", d2S, S) + torch.einsum("enijk,enpjl->enipkl", dS, dS)
        HA = HA + HA.transpose(2, 3)
        return b, J, Hb, A, dA, HA


    def subset(self, members: slice) -> "EffectiveSDE":
        """A copy holding the ensemble members ``members`` (parameters, scaling, architecture)."""
        net = copy.deepcopy(self)
        with torch.no_grad():
            for p in net.parameters():  # every parameter's leading axis is the member axis
                p.data = p.data[members].clone()
        net.members = len(range(*members.indices(self.members)))
        return net

    # ------------------------------------------------------------------ public evaluation
    def members_drift(self, x: Any) -> Any:
        """Drift of every member, ``(members, n, m)``."""
        t, np_in = _as_points(x, self.dim, self.x_mean)
        b, _ = self._parts(t, need_grad=not np_in)
        return b.detach().cpu().numpy() if np_in else b

    def members_diffusion(self, x: Any) -> Any:
        """Diffusion matrix ``A = S S^T`` of every member, ``(members, n, m, m)``."""
        t, np_in = _as_points(x, self.dim, self.x_mean)
        z = ((t - self.x_mean) / self.x_scale).expand(self.members, *t.shape)
        S = self._noise_factor(z)
        A = S @ S.transpose(-1, -2)
        return A.detach().cpu().numpy() if np_in else A

    def drift(self, x: Any, member: int | None = None) -> Any:
        """Ensemble-mean drift ``b(x)``, ``(n, m)`` (or one member's)."""
        b = self.members_drift(x)
        return b[self._member_index(member)] if member is not None else b.mean(0)

    def diffusion(self, x: Any, member: int | None = None) -> Any:
        """Ensemble-mean diffusion matrix ``A(x) = S S^T``, ``(n, m, m)`` (or one member's)."""
        A = self.members_diffusion(x)
        return A[self._member_index(member)] if member is not None else A.mean(0)

    def noise(self, x: Any, member: int | None = None) -> Any:
        """Lower-triangular noise factor ``S(x)`` with ``S S^T = diffusion(x)``, ``(n, m, m)``."""
        A = self.diffusion(x, member)
        if isinstance(A, np.ndarray):
            return np.linalg.cholesky(A)
        return torch.linalg.cholesky(A)

    def drift_spread(self, x: Any) -> Any:
        """Predictive standard deviation of the ensemble-mean drift, ``(n, m)``.

        The member standard deviation (``ddof=1``) times ``sqrt(1 + 1/members)``: the spread
        of a new bootstrap member around the ensemble mean, which is the standard error of the
        mean drift when the members are bootstrap replicates.
        """
        b = self.members_drift(x)
        f = math.sqrt(1.0 + 1.0 / self.members)
        return (b.std(0, ddof=1) if isinstance(b, np.ndarray) else b.std(0, correction=1)) * f

    def diffusion_spread(self, x: Any) -> Any:
        """Predictive standard deviation of the ensemble-mean ``A``, ``(n, m, m)`` (as ``drift_spread``)."""
        A = self.members_diffusion(x)
        f = math.sqrt(1.0 + 1.0 / self.members)
        return (A.std(0, ddof=1) if isinstance(A, np.ndarray) else A.std(0, correction=1)) * f

    def potential(self, x: Any, member: int | None = None) -> Any:
        """Effective potential ``U(x)`` (gradient structure only), ``(n,)``, up to a constant;
        the surrogate's invariant density is ``exp(-U) / Z``."""
        if not self.gradient:
            raise ValueError("potential() needs a surrogate trained with gradient=True")
        t, np_in = _as_points(x, self.dim, self.x_mean)
        z = ((t - self.x_mean) / self.x_scale).expand(self.members, *t.shape)
        U = self._potential_z(z)
        U = U[self._member_index(member)] if member is not None else U.mean(0)
        return U.detach().cpu().numpy() if np_in else U

    def _member_index(self, member: int) -> int:
        if isinstance(member, bool) or not isinstance(member, (int, np.integer)) \
                or not 0 <= member < self.members:
            raise ValueError(f"member={member!r} must be an integer in [0, {self.members})")
        return int(member)

    # ------------------------------------------------------------------ torchsde protocol
    def f(self, t: Any, y: torch.Tensor) -> torch.Tensor:
        """Drift for torchsde: ``y (batch, m) -> (batch, m)`` (ensemble mean)."""
        return self.drift(y)

    def g(self, t: Any, y: torch.Tensor) -> torch.Tensor:
        """Noise for torchsde (``noise_type="general"``): ``(batch, m) -> (batch, m, m)``."""
        return self.noise(y)

    # ------------------------------------------------------------------ simulation
    def simulate(self, *, t_end: float, dt: float, x0: Any = None, n_paths: int = 1, seed: int = 0,
                 save_every: int | None = None, save_times: Any = None, observables: Any = None,
                 member: int | str | None = None, precision: Any = None, device: str = "cpu",
                 threads: int | None = None, path_offset: int = 0, step_offset: int = 0,
                 tables: bool = True, noise_substeps: int = 1) -> xr.Dataset:
        """Simulate the surrogate by Euler-Maruyama in the compiled kernels (CPU SIMD or CUDA).

        The networks run inside the kernel (``csrc/include/multiscale/models/surrogate.h``):
        blocks of paths go through each layer together, with the layer code of the exported C++
        evaluator. A surrogate of one slow variable uses drift and noise tables (cubic Hermite,
        error checked against the networks when they are built, see :meth:`table_info`) and the
        networks outside them. The torch implementation stays as the differentiable reference
        (``_simulate_torch``); both draw the same noise and agree to rounding.

        Parameters
        ----------
        t_end, dt : float
            Final time and step (model time units); ``t_end`` must be a multiple of ``dt``.
        x0 : float, array (m,) or (n_paths, m), optional
            Initial state (default: the centre of the training data).
        n_paths : int
        seed : int
            Noise is Philox4x32-10 normals keyed by (seed, global path index, step) on the
            surrogate's stream, so results depend on neither threads, chunks nor device.
        save_every, save_times, observables
            As in :func:`multiscale.simulate`.
        member : None, int or "sample"
            ``None``: the ensemble-mean drift and diffusion; ``k``: member ``k`` only;
            ``"sample"``: path ``p`` follows member ``p mod members`` (model uncertainty
            propagated into the ensemble).
        precision : multiscale.Precision, optional
            ``FLOAT64`` (default) or ``FLOAT32`` arithmetic in the kernel.
        device : {"cpu", "cuda", "cuda:N"}
        threads : int, optional
            CPU threads (default: all cores). Results do not depend on it.
        path_offset, step_offset : int
            Global index of the first path and of the first step (chunked or continued runs).
        tables : bool
            Use the 1-D tables (no effect for several slow variables).
        noise_substeps : int
            Step ``s`` uses the Brownian increment of steps ``s*k .. s*k+k-1`` of a run with step
            ``dt/k``: with the same seed, a run at ``dt`` and one at ``dt/k`` follow the same
            Brownian path, so their difference is the discretisation error (see
            :func:`multiscale.validate.step_size_check`).

        Returns
        -------
        xarray.Dataset
            ``trajectory (realization, time, state)``, ``final_state``, ``status``, ``fail_step``.
        """
        from .._device import parse_device
        from ..simulate._grid import save_steps, steps_of
        from ..simulate._options import Precision
        from ..simulate._simulate import _initial, observable_plan, observable_variables
        from ._kernel import kernel_of, member_code

        precision = Precision.FLOAT64 if precision is None else precision
        if not isinstance(precision, Precision):
            raise ValueError(f"precision={precision!r} must be a multiscale.Precision")
        n_paths = integer("n_paths", n_paths, 1)
        path_offset = integer("path_offset", path_offset, 0)
        step_offset = integer("step_offset", step_offset, 0)
        if path_offset + n_paths > 2**32:
            raise ValueError(f"path_offset + n_paths = {path_offset + n_paths} exceeds 2**32 paths")
        seed = check_seed("seed", seed)
        dt = positive_finite("dt", dt)
        n_steps = steps_of(positive_finite("t_end", t_end), dt, "t_end")
        noise_substeps = integer("noise_substeps", noise_substeps, 1)
        if (step_offset + n_steps) * noise_substeps >= 2**63:
            raise ValueError(f"step_offset + n_steps = {step_offset + n_steps} (x noise_substeps) must be < 2**63")
        saves = save_steps(n_steps, dt, save_every, save_times)
        names = list(self.names)
        obs_vars, shift, edges, bins, lo, hi = observable_plan(observables, names, "effective_sde", n_steps, dt)
        if isinstance(member, str) and member != "sample":
            raise ValueError(f"member={member!r} must be None, an integer or 'sample'")
        if member is not None and member != "sample":
            self._member_index(member)
        nthreads = 0 if threads is None else integer("threads", threads, 1)
        dev = parse_device(device)
        m = self.dim
        init = np.ascontiguousarray(_initial("x0", x0, self.x_mean.cpu().numpy(), n_paths, m))
        kern = kernel_of(self)
        fn = _core.simulate_surrogate_float64 if precision is Precision.FLOAT64 else _core.simulate_surrogate_float32
        res = fn(**kern.args(member_code(member), bool(tables)), dt=dt, n_steps=n_steps, seed=seed,
                 path_offset=path_offset, step_offset=step_offset, x_init=init, save_steps=saves,
                 threads=nthreads, obs_vars=obs_vars, obs_shift=shift, window_edges=edges, bins=bins, lo=lo,
                 hi=hi, noise_substeps=noise_substeps, device=dev)
        fail = res["fail_step"]
        ds = self._dataset(res["trajectory"] if len(saves) else np.zeros((n_paths, 0, m)), res["final_state"],
                           res["status"], np.where(fail >= 0, fail + step_offset, fail), saves + step_offset,
                           dt, n_steps, n_paths, seed, member, path_offset, str(device))
        ds.attrs.update({"engine": "kernel", "precision": precision.value, "step_offset": int(step_offset),
                         "noise_substeps": int(noise_substeps),
                         "tables": int(bool(tables) and m == 1)})
        if bool(tables) and m == 1:
            tab = kern.table(member_code(member))
            ds.attrs["tables"] = int(tab.usable)
            ds.attrs["table_max_error"] = tab.max_error
        if observables is not None:
            coords, data_vars = observable_variables(observables, edges, dt, bins, lo, hi, res, step_offset)
            ds = ds.assign_coords(coords).assign(data_vars)
        return ds

    def table_info(self, member: int | str | None = None) -> dict[str, float]:
        """The 1-D kernel tables of a member mode: interval ``lo``, ``hi``, ``points`` and the
        relative interpolation error measured at the cell midpoints (``inf``: the coefficients
        are not finite on the grid and the kernel evaluates the networks instead)."""
        from ._kernel import kernel_of, member_code

        if self.dim != 1:
            raise ValueError("tables exist for surrogates of one slow variable only")
        t = kernel_of(self).table(member_code(member))
        return {"lo": t.lo, "hi": t.hi, "points": t.n_grid, "max_error": t.max_error}

    @torch.no_grad()
    def _simulate_torch(self, *, t_end: float, dt: float, x0: Any = None, n_paths: int = 1, seed: int = 0,
                        save_every: int | None = None, save_times: Any = None, observables: Any = None,
                        member: int | str | None = None,
                        device: str = "cpu", threads: int | None = None, path_offset: int = 0,
                        float32_normals: bool = False) -> xr.Dataset:
        """The torch reference of :meth:`simulate` (float64, the same noise, slower).

        ``float32_normals`` drives it with the normals of a FLOAT32 kernel run (Philox gives
        four float32 normals per call where it gives two float64 ones), the reference of the
        float32 kernel. The other parameters are those of :meth:`simulate`; ``device`` is a torch
        device and ``threads`` sets torch's intra-op threads for the call. Differentiable
        training code and tests use it; everything else runs in the kernels.
        """
        from ..simulate._grid import save_steps, steps_of
        from ..simulate._simulate import _initial, observable_plan

        n_paths = integer("n_paths", n_paths, 1)
        path_offset = integer("path_offset", path_offset, 0)
        seed = check_seed("seed", seed)
        dt = positive_finite("dt", dt)
        n_steps = steps_of(positive_finite("t_end", t_end), dt, "t_end")
        saves = save_steps(n_steps, dt, save_every, save_times)
        obs = observable_plan(observables, list(self.names), "effective_sde", n_steps, dt)
        if isinstance(member, str) and member != "sample":
            raise ValueError(f"member={member!r} must be None, an integer or 'sample'")
        if member is not None and member != "sample":
            self._member_index(member)
        if threads is not None:
            integer("threads", threads, 1)
            prev = torch.get_num_threads()
            torch.set_num_threads(threads)
            try:
                return self._simulate_torch(t_end=t_end, dt=dt, x0=x0, n_paths=n_paths, seed=seed,
                                            save_every=save_every, save_times=save_times,
                                            observables=observables, member=member, device=device,
                                            path_offset=path_offset, float32_normals=float32_normals)
            finally:
                torch.set_num_threads(prev)
        m, E = self.dim, self.members
        x = torch.tensor(_initial("x0", x0, self.x_mean.cpu().numpy(), n_paths, m))
        dev = torch.device(device)
        model = self.to(dev)
        x = x.to(dev)
        traj = np.empty((n_paths, saves.size, m))
        status = np.zeros(n_paths, np.int8)
        fail = np.full(n_paths, -1, np.int64)
        alive = torch.ones(n_paths, dtype=torch.bool, device=dev)
        # For member="sample", path p follows member p mod E (a function of the global index).
        gid = (np.arange(path_offset, path_offset + n_paths) % E) if member == "sample" else None
        sq = math.sqrt(dt)
        k_save = 0
        stats = _Streaming(obs, dev) if observables is not None else None
        for step in range(n_steps + 1):
            if stats is not None:
                stats.add(step, x, alive)
            while k_save < saves.size and saves[k_save] == step:
                traj[:, k_save] = x.cpu().numpy()
                traj[~alive.cpu().numpy(), k_save] = np.nan
                k_save += 1
            if step == n_steps:
                break
            xi = torch.as_tensor(_core.normals(seed=seed, path0=path_offset, n_paths=n_paths, step=step,
                                               n=m, single=float32_normals,
                                               stream=Stream.SURROGATE)).to(device=dev, dtype=torch.float64)
            b, S = model._step_coefficients(x, member, gid)
            x_new = x + b * dt + sq * (S @ xi[..., None])[..., 0]
            bad = alive & ~torch.isfinite(x_new).all(-1)
            if bool(bad.any()):
                idx = bad.nonzero()[:, 0].cpu().numpy()
                status[idx], fail[idx] = Status.NONFINITE, step
                alive &= ~bad
            x = torch.where(alive[:, None], x_new, x)  # failed paths keep their last finite state
        final = x.cpu().numpy()
        ds = self._dataset(traj, final, status, fail, saves, dt, n_steps, n_paths, seed, member,
                           path_offset, str(dev))
        if stats is not None:
            from ..simulate._simulate import observable_variables

            coords, data_vars = observable_variables(observables, obs[2], dt, obs[3], obs[4], obs[5],
                                                     stats.result())
            ds = ds.assign_coords(coords).assign(data_vars)
        return ds

    def _step_coefficients(self, x: torch.Tensor, member: int | str | None,
                           gid: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor]:
        if member is None:  # the ensemble mean: every member at every path
            b, S = self._parts(x, need_grad=False)
            A = (S @ S.transpose(-1, -2)).mean(0)
            return b.mean(0), torch.linalg.cholesky(A)
        if member == "sample":
            # Group the paths by member (padded to equal groups): one evaluation per path.
            E, N = self.members, x.shape[0]
            G = -(-N // E)
            order = torch.as_tensor(np.argsort(gid, kind="stable"), device=x.device)
            counts = np.bincount(gid, minlength=E)
            slot = np.concatenate([np.arange(c) for c in counts])  # position within the group
            grp = np.sort(gid, kind="stable")
            xe = x.new_zeros(E, G, x.shape[1])
            gi, si = torch.as_tensor(grp, device=x.device), torch.as_tensor(slot, device=x.device)
            xe[gi, si] = x[order]
            b, S = self._parts(xe, need_grad=False)
            bo, So = torch.empty_like(x), x.new_empty(N, x.shape[1], x.shape[1])
            bo[order], So[order] = b[gi, si], S[gi, si]
            return bo, So
        b, S = self._parts(x, need_grad=False, sel=[int(member)])
        return b[0], S[0]

    def _dataset(self, traj, final, status, fail, saves, dt, n_steps, n_paths, seed, member,
                 path_offset, device) -> xr.Dataset:
        bi = build_info()
        names = list(self.names)
        return xr.Dataset(
            {"trajectory": (("realization", "time", "state"), traj,
                            {"long_name": "state of each path at the saved times"}),
             "final_state": (("realization", "state_all"), final,
                             {"long_name": "state at t_end (last finite state for failed paths)"}),
             "status": (("realization",), status, {"flag_values": np.arange(len(STATUS_MEANINGS), dtype=np.int8),
                                                   "flag_meanings": " ".join(STATUS_MEANINGS)}),
             "fail_step": (("realization",), fail, {"units": "steps"})},
            coords={"realization": np.arange(path_offset, path_offset + n_paths, dtype=np.int64),
                    "time": ("time", saves * dt, {"units": self.units.get("time", "model time")}),
                    "state": names, "state_all": names},
            attrs={"title": "simulation of a learned effective SDE", "model": "effective_sde",
                   "integrator": "euler_maruyama", "dt": float(dt), "n_steps": int(n_steps),
                   "t_end": float(n_steps * dt), "n_paths": int(n_paths), "seed": str(seed),
                   "path_offset": int(path_offset), "member": json.dumps(member),
                   "rng": "Philox4x32-10", "rng_stream": int(Stream.SURROGATE), "device": device,
                   "n_failed": int(np.count_nonzero(status)),
                   "surrogate_json": json.dumps(self.config()),
                   "package": "multiscale", "package_version": bi["version"],
                   "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")})

    # ------------------------------------------------------------------ serialisation
    def config(self) -> dict[str, Any]:
        """JSON-serialisable description (architecture, scaling, provenance, units)."""
        return {"format": "multiscale.EffectiveSDE", "format_version": FORMAT_VERSION,
                "dim": self.dim, "members": self.members, "hidden": list(self.hidden),
                "diffusion": self.diffusion_form.value, "gradient": self.gradient,
                "names": list(self.names), "seed": self.seed,
                "activation": "tanh", "provenance": self.provenance, "units": self.units}

    def state_arrays(self) -> dict[str, np.ndarray]:
        """Every parameter and buffer as a float64 NumPy array (keys: ``state_dict`` names)."""
        return {k: v.detach().cpu().numpy().astype(np.float64, copy=True)
                for k, v in self.state_dict().items()}

    @classmethod
    def from_config(cls, config: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> "EffectiveSDE":
        """Rebuild from :meth:`config` and :meth:`state_arrays` (shapes are checked)."""
        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in config:
                raise ValueError(f"invalid surrogate description: no {key!r}")
            v = config[key]
            if not isinstance(v, kind) or isinstance(v, bool) and kind is not bool:
                raise ValueError(f"invalid surrogate description: {key}={v!r} has the wrong type")
            return v

        hidden = need("hidden", list)
        names = need("names", list)
        provenance, units = config.get("provenance", {}), config.get("units", {})
        if not all(isinstance(h, int) and not isinstance(h, bool) for h in hidden) \
                or not all(isinstance(n, str) for n in names) \
                or not isinstance(provenance, dict) or not isinstance(units, dict):
            raise ValueError("invalid surrogate description: hidden, names, provenance or units malformed")
        try:
            model = cls(need("dim", int), members=need("members", int), hidden=tuple(hidden),
                        diffusion=DiffusionForm(need("diffusion", str)), gradient=need("gradient", bool),
                        names=names, seed=need("seed", int))
        except (TypeError, ValueError) as err:
            raise ValueError(f"invalid surrogate description: {err}") from None
        expected = model.state_dict()
        if set(arrays) != set(expected):
            missing, extra = sorted(set(expected) - set(arrays)), sorted(set(arrays) - set(expected))
            raise ValueError(f"surrogate arrays do not match the architecture (missing {missing}, unexpected {extra})")
        state = {}
        for k, v in expected.items():
            a = np.asarray(arrays[k])
            if a.shape != tuple(v.shape):
                raise ValueError(f"array {k!r} has shape {a.shape}; the architecture needs {tuple(v.shape)}")
            state[k] = torch.tensor(a, dtype=v.dtype)  # a copy: the caller's array may be read-only
        model.load_state_dict(state)
        model.provenance = dict(provenance)
        model.units = {**model.units, **units}
        return model


class _Streaming:
    """Window means, variances and histograms of the live path-states, accumulated per step
    (the path-state at step s belongs to window w when edges[w] < s <= edges[w+1])."""

    def __init__(self, plan, device: torch.device) -> None:
        self.vars, self.shift, self.edges, self.bins, self.lo, self.hi = plan
        W, V = len(self.edges) - 1, len(self.vars)
        self.sum = np.zeros((W, V))
        self.sumsq = np.zeros((W, V))
        self.count = np.zeros((W, V), np.int64)
        self.hist = np.zeros((W, V, self.bins + 2), np.int64)
        self.idx = torch.as_tensor(self.vars, dtype=torch.long, device=device)
        self.shift_t = torch.as_tensor(self.shift, device=device)

    def add(self, step: int, x: torch.Tensor, alive: torch.Tensor) -> None:
        if not self.edges[0] < step <= self.edges[-1]:
            return
        w = int(np.searchsorted(self.edges, step, side="left")) - 1
        v = x[alive][:, self.idx] - self.shift_t
        self.sum[w] += v.sum(0).cpu().numpy()
        self.sumsq[w] += (v * v).sum(0).cpu().numpy()
        self.count[w] += v.shape[0]
        if self.bins:
            vn = v.cpu().numpy() + self.shift
            for j in range(len(self.vars)):
                u = (vn[:, j] - self.lo[j]) / (self.hi[j] - self.lo[j]) * self.bins
                b = np.where(u < 0, 0, np.where(u >= self.bins, self.bins + 1, np.floor(u).astype(np.int64) + 1))
                self.hist[w, j] += np.bincount(b.astype(np.int64), minlength=self.bins + 2)

    def result(self) -> dict[str, np.ndarray]:
        n = self.count.astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = self.sum / n
            var = np.maximum(self.sumsq - n * mean**2, 0.0) / (n - 1)
        return {"obs_mean": mean + self.shift, "obs_var": var, "obs_count": self.count, "hist": self.hist}


def member_moments(model: EffectiveSDE, x: torch.Tensor, lag: float | torch.Tensor,
                   order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of ``X_lag - x`` per member, ``(E, N, m)`` and ``(E, N, m, m)``.

    ``x`` is ``(N, m)``; ``lag`` a number or a tensor ``(N,)``. ``order=1``: Euler, ``b lag`` and ``A lag``. ``order=2``: the second-order (Kessler 1997)
    expansion ``b lag + (J b + A : H_b / 2) lag^2/2`` and
    ``A lag + (J A + A J^T + (b . grad) A + A : grad grad A / 2) lag^2/2``, with the derivatives
    propagated through the networks in Taylor mode (differentiable in the parameters).
    """
    lag_b, lag_A = (lag[:, None], lag[:, None, None]) if isinstance(lag, torch.Tensor) else (lag, lag)
    if order == 1:
        b, S = model._parts(x, need_grad=True)
        A = S @ S.transpose(-1, -2)
        return b * lag_b, A * lag_A
    if model.gradient:
        raise ValueError("the second-order transition density is not available with gradient=True; "
                         "use method=TrajectoryMethod.EULER or gradient=False")
    b, J, Hb, A, dA, HA = model._jets(x)
    Lb = (J @ b[..., None])[..., 0] + 0.5 * torch.einsum("enkl,enikl->eni", A, Hb)
    JA = J @ A
    LA = JA + JA.transpose(-1, -2) + torch.einsum("enk,enijk->enij", b, dA) \
        + 0.5 * torch.einsum("enkl,enijkl->enij", A, HA)
    return b * lag_b + Lb * (0.5 * lag_b**2), A * lag_A + LA * (0.5 * lag_A**2)
