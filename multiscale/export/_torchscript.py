"""PyTorch exports of a surrogate that load without this package: TorchScript and torch.export.

The exported module is self-contained (its code is the small class below, compiled into the
file): ``forward(x) -> (drift (n, m), diffusion A (n, m, m))`` as ensemble means in float64,
and the scripted methods ``drift``, ``diffusion``, ``noise``, ``members_drift`` and
``members_diffusion``. The gradient structure's ``grad U`` and ``div A`` are computed by
forward-mode derivatives through the layers, so the module needs no autograd at run time.
"""
# (no "from __future__ import annotations": TorchScript reads the class annotations)

import json
import os
import secrets
import warnings
from pathlib import Path
from typing import Optional, Tuple

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

    The module holds a float64 copy of the weights and the model description as
    ``config_json``; it does not import multiscale when loaded.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's own deprecation notices
        scripted = torch.jit.script(ExportedSDE(model).eval())
        return _save_atomic(path, lambda f: torch.jit.save(scripted, f))


def export_torch_program(model, path: str | os.PathLike) -> Path:
    """``torch.export`` program of ``forward(x) -> (drift, diffusion)`` with a dynamic batch
    dimension, saved by ``torch.export.save`` (load with ``torch.export.load(path).module()``)."""
    if not Path(path).parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist")
    module = ExportedSDE(model).eval()
    # An example batch size equal to no other extent (members, widths, dim): torch.export
    # would otherwise tie the batch dimension to it and guard on it.
    n_example = 1 + max(model.members, max(model.hidden), model.dim * (model.dim + 1), 16)
    example = torch.zeros(n_example, model.dim, dtype=torch.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: torch.export.Dim.DYNAMIC}})
        return _save_atomic(path, lambda f: torch.export.save(program, f))
