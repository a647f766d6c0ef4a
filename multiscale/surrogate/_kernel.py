"""A learned surrogate as a compiled kernel model (``csrc/include/multiscale/models/surrogate.h``).

The kernels take the ensemble as one flat float64 array in the portable format's order (the
order :func:`multiscale.export_surrogate` writes) plus a small description. One slow variable
also gets tables: drift and noise per member (or of the ensemble mean) on a uniform grid over the
data range and half its width beyond, interpolated by the cubic spline through the grid values
(Hermite form: values and spline slopes). Their error against the networks is measured at the
cell midpoints when they are built and the grid is refined until it is below
:data:`TABLE_TOLERANCE`; states outside the grid evaluate the networks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ._options import DiffusionForm

#: Relative bound (to the largest magnitude of the tabulated function over the grid) on the
#: tables' interpolation error, checked at every cell midpoint when the tables are built.
TABLE_TOLERANCE = 1e-9
_TABLE_POINTS = (2049, 8193, 32769, 131073)

_FORM = {DiffusionForm.CHOLESKY: 0, DiffusionForm.DIAGONAL: 1, DiffusionForm.SCALAR: 2}
MEMBER_MEAN, MEMBER_SAMPLE = -1, -2


def portable_arrays(model) -> list[tuple[str, np.ndarray]]:
    """Every array of the surrogate in the portable format's order, as float64 C arrays."""
    state = model.state_arrays()
    n_layers = len(model.hidden) + 1
    names = []
    for net in ("drift_net", "diff_net"):
        for i in range(n_layers):
            names += [f"{net}.weights.{i}", f"{net}.biases.{i}"]
    names += ["confine", "x_mean", "x_scale", "b_mean", "b_scale", "s_scale", "x_lo", "x_hi"]
    missing = sorted(set(names) ^ set(state))
    if missing:
        raise ValueError(f"model state and export layout disagree on {missing}")
    return [(k, np.ascontiguousarray(state[k], dtype="<f8")) for k in names]


@dataclass(frozen=True)
class Table:
    """Cubic Hermite tables of one member mode: ``data (groups, n_grid, 4)`` = b, b', s, s'."""

    data: np.ndarray
    lo: float
    h: float
    max_error: float  # measured at the cell midpoints, relative (see TABLE_TOLERANCE)

    @property
    def usable(self) -> bool:
        """False when the coefficients are not finite on the grid (the kernel then evaluates
        the networks, which report the failing paths)."""
        return bool(np.isfinite(self.max_error))

    @property
    def n_grid(self) -> int:
        return int(self.data.shape[1])

    @property
    def hi(self) -> float:
        return self.lo + self.h * (self.n_grid - 1)


def member_code(member: int | str | None) -> int:
    """The kernel's member code: k >= 0, MEMBER_MEAN for None, MEMBER_SAMPLE for "sample"."""
    if member is None:
        return MEMBER_MEAN
    if member == "sample":
        return MEMBER_SAMPLE
    return int(member)


def _versions(model) -> tuple:
    return tuple(t._version for t in list(model.parameters()) + list(model.buffers()))


class KernelSurrogate:
    """The kernel arguments of one surrogate, rebuilt when its parameters change."""

    def __init__(self, model) -> None:
        self.model = model
        self.versions = _versions(model)
        arrays = portable_arrays(model)
        self.params = np.concatenate([a.ravel() for k, a in arrays if k not in ("x_lo", "x_hi")])
        self.tables: dict[int, Table] = {}

    def fresh(self) -> bool:
        return self.versions == _versions(self.model)

    def args(self, member: int, tables: bool) -> dict[str, Any]:
        """Keyword arguments of ``_core.simulate_surrogate_*`` / ``passage_surrogate`` for the model."""
        m = self.model
        tab = self.table(member) if tables and m.dim == 1 else None
        tab = tab if tab is not None and tab.usable else None
        return dict(dim=m.dim, members=m.members, form=_FORM[m.diffusion_form], gradient=m.gradient,
                    member=member, hidden=np.asarray(m.hidden, np.int32), params=self.params,
                    tables=np.zeros(0) if tab is None else tab.data.ravel(),
                    n_grid=0 if tab is None else tab.n_grid, t_lo=0.0 if tab is None else tab.lo,
                    t_h=0.0 if tab is None else tab.h)

    def table(self, member: int) -> Table:
        if member not in self.tables:
            self.tables[member] = build_table(self.model, member)
        return self.tables[member]


def kernel_of(model) -> KernelSurrogate:
    """The model's cached :class:`KernelSurrogate` (rebuilt after any parameter change)."""
    k = getattr(model, "_kernel_cache", None)
    if k is None or not k.fresh():
        k = KernelSurrogate(model)
        model._kernel_cache = k
    return k


def table_range(model) -> tuple[float, float]:
    """The tables' interval: the data range and half its width on each side."""
    lo, hi = float(model.x_lo[0]), float(model.x_hi[0])
    if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
        c, w = float(model.x_mean[0]), float(model.x_scale[0])
        lo, hi = c - 4 * w, c + 4 * w
    pad = 0.5 * (hi - lo)
    return lo - pad, hi + pad


@torch.no_grad()
def _coefficients(model, x: np.ndarray, member: int) -> tuple[np.ndarray, np.ndarray]:
    """Drift and noise ``s = S_00`` of a 1-D surrogate at x (n,), for one member mode; (G, n) each."""
    xt = torch.as_tensor(x[:, None], dtype=torch.float64)
    if member == MEMBER_SAMPLE:
        b, S = model._parts(xt, need_grad=False)
        return b[..., 0].numpy(), S[..., 0, 0].numpy()
    b, S = model._step_coefficients(xt, None if member == MEMBER_MEAN else member, None)
    return b[None, :, 0].numpy(), S[None, :, 0, 0].numpy()


def build_table(model, member: int) -> Table:
    """Tables of a one-variable surrogate, refined until the midpoint error is below tolerance."""
    from scipy.interpolate import CubicSpline

    if model.dim != 1:
        raise ValueError("tables are for surrogates of one slow variable")
    lo, hi = table_range(model)
    err = math.inf
    for n in _TABLE_POINTS:
        x = np.linspace(lo, hi, n)
        h = (hi - lo) / (n - 1)
        b, s = _coefficients(model, x, member)
        if not (np.all(np.isfinite(b)) and np.all(np.isfinite(s))):
            return Table(data=np.zeros((b.shape[0], 2, 4)), lo=float(lo), h=float(hi - lo), max_error=math.inf)
        G = b.shape[0]
        data = np.empty((G, n, 4))
        mid = x[:-1] + 0.5 * h
        bm, sm = _coefficients(model, mid, member)
        err = 0.0
        for g in range(G):
            for col, (y, ym) in enumerate(((b[g], bm[g]), (s[g], sm[g]))):
                spline = CubicSpline(x, y)
                data[g, :, 2 * col] = y
                data[g, :, 2 * col + 1] = spline(x, 1)
                scale = max(float(np.abs(y).max()), 1e-300)
                err = max(err, float(np.abs(spline(mid) - ym).max()) / scale)
        if err < TABLE_TOLERANCE:
            break
    return Table(data=data, lo=float(lo), h=float(h), max_error=err)
