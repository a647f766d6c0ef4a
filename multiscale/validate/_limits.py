"""Exact effective (eps -> 0) SDEs of catalogue models, where the mathematics gives one.

``exact_limit(model, params)`` returns the drift F(x) and diffusion A(x) of the averaged or
homogenized SDE of a catalogue model with one slow variable, as vectorised callables, or None
when no closed form (or quadrature) is known. Validation uses them as the third leg of
"full system / surrogate / exact".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

from .. import exact
from ..models._catalog import get_model

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
        return None
    if info.name == "tilted_double_well":  # REFERENCE problem 2
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
