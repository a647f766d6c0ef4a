"""PyTorch exports of a surrogate that load without this package: TorchScript and torch.export.

The exported module is self-contained (its code is the small class below, compiled into the
file): ``forward(x) -> (drift (n, m), diffusion A (n, m, m))`` as ensemble means in float64,
and the scripted methods ``drift``, ``diffusion``, ``noise``, ``members_drift`` and
``members_diffusion``. The gradient structure's ``grad U`` and ``div A`` are computed by
forward-mode derivatives through the layers, so the module needs no autograd at run time.

A ring surrogate (:class:`LocalEffectiveSDE`) exports as :class:`ExportedRingSDE`:
``forward(x (n, K)) -> (total drift R + U (n, K), diagonal diffusion A_kk (n, K))`` as ensemble
means. ``R`` is the resolved model's slow drift run from the same stack program the portable
file stores (:mod:`._program`), interpreted on ``(n, lanes)`` tensors: the model language's
torch functions are Python closures that ``torch.jit.script`` cannot compile.
"""
# (no "from __future__ import annotations": TorchScript reads the class annotations)

import json
import os
import secrets
import warnings
from pathlib import Path
from typing import List, Optional, Tuple

import torch

from ._format import FORMAT_VERSION



class _Layer(torch.nn.Module):
    def __init__(self, w: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("w", w.detach().clone().to(torch.float64))
        self.register_buffer("b", b.detach().clone().to(torch.float64))

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.b, h, self.w)


class _Net(torch.nn.Module):
    """tanh MLP ensemble with forward-mode tangents: value ``(E, N, out)`` and, for input
    tangents ``dh (E, N, T, in)``, tangents ``(E, N, T, out)``."""

    def __init__(self, weights, biases) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList([_Layer(w, b) for w, b in zip(weights, biases)])

    def forward(self, h: torch.Tensor, dh: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        n = len(self.layers)
        i = 0
        for layer in self.layers:
            w = layer.w
            a = layer(h)
            da: Optional[torch.Tensor] = None
            if dh is not None:
                da = torch.matmul(dh, w.unsqueeze(1))  # (E, N, T, in) @ (E, 1, in, out)
            if i < n - 1:
                a = torch.tanh(a)
                if da is not None:
                    da = (1.0 - a * a).unsqueeze(2) * da
            h, dh = a, da
            i += 1
        return h, dh


def _softplus(u: torch.Tensor) -> torch.Tensor:
    return torch.where(u > 20.0, u, torch.log1p(torch.exp(torch.clamp(u, max=20.0))))


class ExportedSDE(torch.nn.Module):
    """Standalone evaluator of an :class:`EffectiveSDE` (see the module docstring)."""

    config_json: str
    format_version: int
    dim: int
    members: int
    form: int  # 0 cholesky, 1 diagonal, 2 scalar
    gradient: bool

    def __init__(self, model) -> None:
        super().__init__()
        self.config_json = json.dumps(model.config(), sort_keys=True)
        self.format_version = FORMAT_VERSION
        self.dim, self.members, self.gradient = model.dim, model.members, bool(model.gradient)
        self.form = {"cholesky": 0, "diagonal": 1, "scalar": 2}[model.diffusion_form.value]
        self.drift_net = _Net(model.drift_net.weights, model.drift_net.biases)
        self.diff_net = _Net(model.diff_net.weights, model.diff_net.biases)
        f64 = torch.float64
        for name in ("x_mean", "x_scale", "b_mean", "b_scale", "s_scale"):
            self.register_buffer(name, getattr(model, name).detach().clone().to(f64))
        self.register_buffer("confine_c", torch.nn.functional.softplus(model.confine.detach().to(f64)))
        self.register_buffer("u_scale", model.u_scale().detach().clone().to(f64))
        m = model.dim
        if self.form == 0:
            rows, cols = torch.tril_indices(m, m)
        else:
            rows = cols = torch.arange(m)
        self.register_buffer("rows", rows.clone())
        self.register_buffer("cols", cols.clone())
        # Flat positions of (d_t A)_{i t} in a (T, m, m) block, ordered (i, t): the terms of (div A)_i.
        i, t = torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")
        self.register_buffer("div_index", (t * m * m + i * m + t).reshape(-1).clone())

    def _noise(self, r: torch.Tensor, dr: Optional[torch.Tensor]) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        """``S (E, N, m, m)`` and ``dS (E, N, T, m, m)`` from the diffusion outputs."""
        E, N = r.shape[0], r.shape[1]
        m = self.dim
        if self.form == 2:
            u = r[..., 0] + 0.5413248546129181  # log(e - 1): softplus = 1 at raw 0
            c = self.s_scale.mean()
            eye = torch.eye(m, dtype=r.dtype, device=r.device)
            S = (c * (_softplus(u) + 1e-6))[..., None, None] * eye
            dS: Optional[torch.Tensor] = None
            if dr is not None:
                ds = c * torch.sigmoid(u).unsqueeze(2) * dr[..., 0]
                dS = ds[..., None, None] * eye
            return S, dS
        diag = (self.rows == self.cols)
        u = r + 0.5413248546129181
        val = torch.where(diag, _softplus(u) + 1e-6, r)
        S = torch.zeros(E, N, m, m, dtype=r.dtype, device=r.device)
        sc = self.s_scale[self.rows]
        S[:, :, self.rows, self.cols] = sc * val
        dS2: Optional[torch.Tensor] = None
        if dr is not None:
            g = torch.where(diag, torch.sigmoid(torch.where(u > 20.0, torch.full_like(u, 1e3), u)),
                            torch.ones_like(u))
            T = dr.shape[2]
            d = torch.zeros(E, N, T, m, m, dtype=r.dtype, device=r.device)
            d[:, :, :, self.rows, self.cols] = sc * g.unsqueeze(2) * dr
            dS2 = d
        return S, dS2

    def members_both(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Drift ``(E, n, m)`` and diffusion ``(E, n, m, m)`` of every member."""
        E, m = self.members, self.dim
        x = x.to(torch.float64).reshape(-1, m)
        N = x.shape[0]
        z = ((x - self.x_mean) / self.x_scale).expand(E, N, m)
        if not self.gradient:
            r, _ = self.diff_net(z, None)
            S, _ = self._noise(r, None)
            out, _ = self.drift_net(z, None)
            return self.b_mean + self.b_scale * out, S @ S.transpose(-1, -2)
        dz = torch.diag(1.0 / self.x_scale).expand(E, N, m, m)  # tangent t: dz/dx_t
        r, dr = self.diff_net(z, dz)
        S, dS = self._noise(r, dr)
        A = S @ S.transpose(-1, -2)
        u, du = self.drift_net(z, dz)
        assert du is not None and dS is not None
        z2 = (z * z).sum(-1, keepdim=True)
        gU = self.u_scale * (du[..., 0] + self.confine_c[:, None, None] * z2 * z / self.x_scale)
        # (div A)_i = sum_j d_j A_ij, d_j A = dS_j S^T + S dS_j^T
        dA = dS @ S.unsqueeze(2).transpose(-1, -2) + S.unsqueeze(2) @ dS.transpose(-1, -2)  # (E,N,T,m,m)
        # Gathered by a flat index, not torch.diagonal: the strided diagonal view made
        # torch.export guard the 1-D gradient graph to batches of at least 3.
        divA = dA.reshape(E, N, m * m * m).index_select(2, self.div_index).reshape(E, N, m, m).sum(-1)
        b = -0.5 * (A @ gU.unsqueeze(-1)).squeeze(-1) + 0.5 * divA
        return b, A

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        b, A = self.members_both(x)
        return b.mean(0), A.mean(0)

    @torch.jit.export
    def drift(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_both(x)[0].mean(0)

    @torch.jit.export
    def diffusion(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_both(x)[1].mean(0)

    @torch.jit.export
    def noise(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.cholesky(self.members_both(x)[1].mean(0))

    @torch.jit.export
    def members_drift(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_both(x)[0]

    @torch.jit.export
    def members_diffusion(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_both(x)[1]


class ExportedRingSDE(torch.nn.Module):
    """Standalone evaluator of a :class:`LocalEffectiveSDE` (see the module docstring).

    Methods (``x (n, K)``, float64 out): ``forward`` (drift, diagonal diffusion), ``drift``,
    ``diffusion`` (``(n, K, K)`` matrices), ``diffusion_diagonal``, ``noise_diagonal``
    (``sqrt`` of the mean ``A``), ``resolved`` (``R``), ``unresolved`` (mean ``U``),
    ``members_unresolved`` / ``members_noise`` / ``members_drift`` (``(E, n, K)``).
    """

    config_json: str
    format_version: int
    sites: int
    stencil: int
    members: int
    ops: List[int]
    args: List[int]
    eqs: List[int]

    def __init__(self, model) -> None:
        super().__init__()
        from ._program import compile_resolved

        self.config_json = json.dumps(model.config(), sort_keys=True)
        self.format_version = FORMAT_VERSION
        self.sites, self.stencil, self.members = model.sites, model.stencil, model.members
        self.drift_net = _Net(model.drift_net.weights, model.drift_net.biases)
        self.diff_net = _Net(model.diff_net.weights, model.diff_net.biases)
        for name in ("x_mean", "x_scale", "u_mean", "u_scale", "s_scale"):
            self.register_buffer(name, getattr(model, name).detach().clone().to(torch.float64))
        self.register_buffer("cols", model._cols.clone())
        if model.resolved is not None:
            prog = compile_resolved(model.resolved, model.resolved_params)
            code, eqs = prog.code.astype(int), prog.equations.astype(int)
            consts, lanes = prog.constants, prog.lanes
        else:
            code, eqs, consts, lanes = [], [], [], []
        self.ops = [int(c[0]) for c in code]
        self.args = [int(c[1]) for c in code]
        self.eqs = [int(v) for row in eqs for v in row]
        self.register_buffer("consts", torch.as_tensor(consts, dtype=torch.float64).reshape(-1))
        lanes_t = torch.as_tensor(lanes, dtype=torch.float64).reshape(-1, model.sites)
        self.register_buffer("lanes", lanes_t)
        self.register_buffer("lanes_index", lanes_t.round().to(torch.long))
        self.register_buffer("lanes_mask", lanes_t != 0)

    def _unary(self, f: int, a: torch.Tensor) -> torch.Tensor:
        if f == 0:
            return torch.sin(a)
        if f == 1:
            return torch.cos(a)
        if f == 2:
            return torch.tan(a)
        if f == 3:
            return torch.exp(a)
        if f == 4:
            return torch.log(a)
        if f == 5:
            return torch.sqrt(a)
        if f == 6:
            return torch.tanh(a)
        if f == 7:
            return torch.abs(a)
        if f == 8:
            return torch.sinh(a)
        if f == 9:
            return torch.cosh(a)
        if f == 10:
            return torch.atan(a)
        if f == 11:
            return torch.asin(a)
        if f == 12:
            return torch.acos(a)
        if f == 13:
            return torch.log1p(a)
        if f == 14:
            return torch.expm1(a)
        if f == 15:
            return torch.erf(a)
        if f == 16:
            return torch.sin(2 * 3.141592653589793 * (a - torch.floor(a)))
        return torch.cos(2 * 3.141592653589793 * (a - torch.floor(a)))

    @torch.jit.export
    def resolved(self, x: torch.Tensor) -> torch.Tensor:
        """``R (n, K)``: the stored program, each instruction on a whole ``(n, lanes)`` tensor."""
        x = x.to(torch.float64).reshape(-1, self.sites)
        N = x.shape[0]
        if len(self.eqs) == 0:
            return torch.zeros_like(x)
        parts: List[torch.Tensor] = []
        for q in range(len(self.eqs) // 4):
            n, start, length = self.eqs[4 * q + 1], self.eqs[4 * q + 2], self.eqs[4 * q + 3]
            st: List[torch.Tensor] = []
            for i in range(start, start + length):
                op, a = self.ops[i], self.args[i]
                if op == 1:
                    st.append(self.consts[a])
                elif op == 2:
                    st.append(self.lanes[a, :n])
                elif op == 3:
                    st.append(x[:, self.lanes_index[a, :n]])
                elif op == 4:
                    st.append(-st.pop())
                elif op == 10:
                    st.append(self._unary(a, st.pop()))
                elif op == 12:
                    st.append(torch.where(self.lanes_mask[a, :n], st.pop(), torch.zeros_like(self.consts[0])))
                else:
                    b = st.pop()
                    t = st.pop()
                    if op == 5:
                        t = t + b
                    elif op == 6:
                        t = t - b
                    elif op == 7:
                        t = t * b
                    elif op == 8:
                        t = t / b
                    elif op == 9:
                        t = torch.pow(t, b)
                    elif a == 0:
                        t = torch.atan2(t, b)
                    elif a == 1:
                        t = torch.minimum(t, b)
                    else:
                        t = torch.maximum(t, b)
                    st.append(t)
            parts.append(st[0].expand(N, n))
        return torch.cat(parts, 1)  # equations in state order (offsets ascending)

    @torch.jit.export
    def members_parts(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """``U`` and the diagonal ``S`` of every member, each ``(E, n, K)``."""
        x = x.to(torch.float64).reshape(-1, self.sites)
        N, K, E = x.shape[0], self.sites, self.members
        z = ((x[:, self.cols] - self.x_mean) / self.x_scale).reshape(1, N * K, 2 * self.stencil + 1)
        z = z.expand(E, N * K, 2 * self.stencil + 1)
        u, _ = self.drift_net(z, None)
        r, _ = self.diff_net(z, None)
        s = self.s_scale * (_softplus(r[..., 0] + 0.5413248546129181) + 1e-6)
        return (self.u_mean + self.u_scale * u[..., 0]).reshape(E, N, K), s.reshape(E, N, K)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        u, s = self.members_parts(x)
        return (self.resolved(x).unsqueeze(0) + u).mean(0), (s * s).mean(0)

    @torch.jit.export
    def drift(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[0]

    @torch.jit.export
    def diffusion_diagonal(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)[1]

    @torch.jit.export
    def diffusion(self, x: torch.Tensor) -> torch.Tensor:
        return torch.diag_embed(self.forward(x)[1])

    @torch.jit.export
    def noise_diagonal(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sqrt(self.forward(x)[1])

    @torch.jit.export
    def unresolved(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_parts(x)[0].mean(0)

    @torch.jit.export
    def members_unresolved(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_parts(x)[0]

    @torch.jit.export
    def members_noise(self, x: torch.Tensor) -> torch.Tensor:
        return self.members_parts(x)[1]

    @torch.jit.export
    def members_drift(self, x: torch.Tensor) -> torch.Tensor:
        return self.resolved(x).unsqueeze(0) + self.members_parts(x)[0]


def _module(model) -> torch.nn.Module:
    from ..surrogate._local import LocalEffectiveSDE

    return (ExportedRingSDE if isinstance(model, LocalEffectiveSDE) else ExportedSDE)(model).eval()


def _save_atomic(path: str | os.PathLike, save) -> Path:
    """``save(tmp)`` to a temporary file beside ``path``, then rename it onto ``path``."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist")
    # Same suffix as the target: torch.export.save warns about other suffixes.
    tmp = path.with_name(f".{path.stem}.{secrets.token_hex(6)}.tmp{path.suffix}")
    try:
        save(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def export_torchscript(model, path: str | os.PathLike) -> Path:
    """TorchScript file of the surrogate (``torch.jit.load``; libtorch; FTorch from Fortran).

    The module (:class:`ExportedSDE`, or :class:`ExportedRingSDE` for a
    :class:`LocalEffectiveSDE`) holds a float64 copy of the weights and the model description
    as ``config_json``; it does not import multiscale when loaded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's own deprecation notices
        scripted = torch.jit.script(_module(model))
        return _save_atomic(path, lambda f: torch.jit.save(scripted, f))


def export_torch_program(model, path: str | os.PathLike) -> Path:
    """``torch.export`` program of ``forward(x) -> (drift, diffusion)`` with a dynamic batch
    dimension, saved by ``torch.export.save`` (load with ``torch.export.load(path).module()``).
    For a ring surrogate the diffusion is the diagonal ``(n, K)``."""
    if not Path(path).parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist")
    module = _module(model)
    # An example batch size equal to no other extent (members, widths, dim): torch.export
    # would otherwise tie the batch dimension to it and guard on it.
    n_example = 1 + max(model.members, max(model.hidden), model.dim * (model.dim + 1), 16)
    example = torch.zeros(n_example, model.dim, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}})
        return _save_atomic(path, lambda f: torch.export.save(program, f))
