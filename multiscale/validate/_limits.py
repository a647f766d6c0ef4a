"""Exact effective (eps -> 0) SDEs of catalogue models, where the mathematics gives one.

``exact_limit(model, params)`` returns the drift F(x) and diffusion A(x) of the averaged or
homogenized SDE of a catalogue model with one slow variable, as vectorised callables, or None
when no closed form (or quadrature) is known. Validation uses them as the third leg of
"full system / surrogate / exact".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .. import exact
from ..models import get_model

Field = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class ExactLimit:
    """The effective SDE dX = F(X) dt + sqrt(A(X)) dW of a model in the limit eps -> 0."""

    drift: Field
    diffusion: Field
    description: str


def _tilted_fast_mean(s: np.ndarray) -> np.ndarray:
    """m(s) = E[Y] under exp(-y^4/4 + y^2/2 + s y), vectorised (trapezoid on a wide y grid: the
    integrand is smooth and decays like exp(-y^4/4), so the rule converges spectrally)."""
    s = np.asarray(s, dtype=float)
    flat = s.ravel()
    out = np.empty_like(flat)
    for i in range(0, flat.size, 2048):
        c = flat[i:i + 2048, None]
        # the y range must cover the tilted mode, near the root of y^3 - y = s
        top = np.cbrt(np.abs(c).max()) + 1.5 + 4.0
        y = np.linspace(-top, top, 801)[None, :]
        e = -(y**4) / 4 + y**2 / 2 + c * y
        w = np.exp(e - e.max(axis=1, keepdims=True))
        out[i:i + 2048] = (w * y).sum(1) / w.sum(1)
    return out.reshape(s.shape)


def exact_limit(model: str, params: Mapping[str, float] | None = None) -> ExactLimit | None:
    """Exact effective SDE of a catalogue model with one slow variable, or None.

    Parameters
    ----------
    model : str
        Catalogue name.
    params : dict, optional
        Parameter overrides (the model's defaults otherwise).
    """
    info = get_model(model)
    p = info.resolve_params(params)
    if info.core is not None:  # a user model: its name may be a catalogue name, its equations not
        return _user_limit(info, p)
    if info.name == "tilted_double_well":  # reference problem 2
        a0, lam = p["a0"], p["lam"]
        return ExactLimit(lambda x: a0 - np.asarray(x, float) + lam * _tilted_fast_mean(lam * np.asarray(x, float)),
                          lambda x: np.full(np.shape(x), 2.0),
                          f"averaged SDE dX = (a0 - X + lam m(lam X)) dt + sqrt(2) dW (a0={a0}, lam={lam})")
    if info.name == "fast_ou_linear":  # problem 1a
        c, s = p["c"], p["sigma"]
        return ExactLimit(lambda x: exact.fast_ou_linear_drift(x, c), lambda x: np.full(np.shape(x), s * s),
                          f"averaged SDE dX = ((1+c) X - X^3) dt + sigma dW (c={c}, sigma={s})")
    if info.name == "fast_ou_noise":  # problem 4
        return ExactLimit(exact.fast_ou_noise_drift, exact.fast_ou_noise_diffusion,
                          "homogenized SDE dX = -X^3 dt + sqrt(2(1+X^2)) dW")
    if info.name == "double_well":  # problem 5: single scale, its own limit
        s = p["sigma"]
        return ExactLimit(lambda x: np.asarray(x, float) - np.asarray(x, float) ** 3,
                          lambda x: np.full(np.shape(x), s * s), f"dX = (X - X^3) dt + sigma dW (sigma={s})")
    if info.name == "ornstein_uhlenbeck":
        th, D = p["theta"], p["D"]
        return ExactLimit(lambda x: -th * np.asarray(x, float), lambda x: np.full(np.shape(x), 2 * D),
                          f"dX = -theta X dt + sqrt(2D) dW (theta={th}, D={D})")
    return None


def _user_limit(info: Any, p: Mapping[str, float]) -> ExactLimit | None:
    """The limit of a user model with one slow variable, where its definition gives it:
    without fast variables (scaling "none") the model is its own limit; with averaging scaling,
    one fast variable and a declared ``fast_invariant_density``, F(x) = E_x[f] and
    A(x) = E_x[alpha^2] by quadrature over y (trapezoid on [-30, 30], 12001 points: spectrally
    accurate for smooth, fast-decaying densities; None when the density is not negligible at
    the ends of that range or is not finite)."""
    model = info.source
    m, n = model.dims(p)
    if m != 1 or model.scaling.value == "homogenization":
        return None
    fn = model.numpy_functions(params=p, eps=info.default_eps if info.uses_eps else None)
    desc = f"user model {model.name!r}"
    if n == 0:
        if info.uses_eps:  # eps in the coefficients: the eps -> 0 limit is not the model itself
            return None

        def col(x: Any, what: str) -> np.ndarray:
            xs = np.asarray(x, float)
            v = getattr(fn, what)(xs.reshape(-1, 1))[:, 0]
            return (v if what == "slow_drift" else v * v).reshape(xs.shape)

        return ExactLimit(lambda x: col(x, "slow_drift"), lambda x: col(x, "slow_noise"),
                          f"{desc}: single scale, its own limit")
    if n != 1 or model.fast_invariant_density is None or model.scaling.value != "averaging":
        return None
    table = _QuadratureTable(fn, desc)
    try:
        table.moments(np.zeros(1))
    except ValueError:
        return None
    return ExactLimit(lambda x: table(x, 0), lambda x: table(x, 1),
                      f"{desc}: F = E[f], A = E[alpha^2] under the declared fast invariant density (quadrature)")


class _QuadratureTable:
    """F(x) = E_x[f], A(x) = E_x[alpha^2] of a user model by quadrature over y, tabulated.

    Quadrature: the density on y in [-30, 30] (1201 points) locates its support (where it
    exceeds 1e-16 of its peak) for the batch; the trapezoid rule on 2001 points of that support
    is spectrally accurate for smooth, fast-decaying densities. A density not negligible at the
    ends of [-30, 30], negative or not finite is refused. Validation evaluates the limit at
    very many points (quadratures over x, one point at a time), so the values are tabulated on a
    grid of spacing 2e-3 over the queried range (extended on demand) and interpolated by cubic
    splines: about 1e-10 relative to the quadrature for smooth coefficients."""

    H = 2e-3

    def __init__(self, fn: Any, desc: str) -> None:
        self.fn, self.desc = fn, desc
        self.lo = self.hi = None
        self.splines: tuple[Any, Any] | None = None

    def moments(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        out = np.empty((2, xs.size))
        for a in range(0, xs.size, 256):  # bounded memory: 256 x 2001 states at a time
            out[:, a:a + 256] = self._moments(xs[a:a + 256])
        return out[0], out[1]

    @staticmethod
    def _states(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every (x_i, y_j) pair as batched states, x-major: shapes (len(x) len(y), 1)."""
        return np.repeat(x, y.size)[:, None], np.tile(y, x.size)[:, None]

    def _rho(self, X: np.ndarray, Y: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        rho = self.fn.fast_invariant_density(X, Y).reshape(shape)
        if not np.all(np.isfinite(rho)) or np.any(rho < 0):
            raise ValueError(f"{self.desc}: fast_invariant_density is negative or not finite on y in [-30, 30]")
        return rho

    def _moments(self, x: np.ndarray) -> np.ndarray:
        from scipy.integrate import trapezoid

        coarse = np.linspace(-30.0, 30.0, 1201)
        rho = self._rho(*self._states(x, coarse), (x.size, coarse.size))
        peak = rho.max(axis=1)
        if np.any(peak <= 0) or np.any(np.maximum(rho[:, 0], rho[:, -1]) > 1e-12 * peak):
            raise ValueError(f"{self.desc}: fast_invariant_density is not negligible at y = +-30; "
                             "the quadrature of the exact limit needs it concentrated inside")
        inside = np.nonzero((rho > 1e-16 * peak[:, None]).any(axis=0))[0]
        yg = np.linspace(coarse[max(inside[0] - 1, 0)], coarse[min(inside[-1] + 1, coarse.size - 1)], 2001)
        X, Y = self._states(x, yg)  # built once for the density, f and alpha
        rho = self._rho(X, Y, (x.size, yg.size))
        f = self.fn.slow_drift(X, Y)[:, 0].reshape(rho.shape)
        a = self.fn.slow_noise(X, Y)[:, 0].reshape(rho.shape)
        w = rho / trapezoid(rho, yg, axis=1)[:, None]
        return np.stack([trapezoid(w * f, yg, axis=1), trapezoid(w * a * a, yg, axis=1)])

    def __call__(self, x: Any, which: int) -> np.ndarray:
        from scipy.interpolate import CubicSpline

        xs = np.asarray(x, float)
        fin = xs[np.isfinite(xs)]
        if fin.size == 0:
            return np.full(xs.shape, np.nan)
        lo, hi = np.floor(fin.min()) - 1.0, np.ceil(fin.max()) + 1.0
        if self.splines is None or lo < self.lo or hi > self.hi:
            self.lo = lo if self.lo is None else min(lo, self.lo)
            self.hi = hi if self.hi is None else max(hi, self.hi)
            grid = np.linspace(self.lo, self.hi, int(round((self.hi - self.lo) / self.H)) + 1)
            F, A = self.moments(grid)
            self.splines = (CubicSpline(grid, F), CubicSpline(grid, A))
        out = np.full(xs.shape, np.nan)
        ok = np.isfinite(xs)
        out[ok] = self.splines[which](xs[ok])
        return out
