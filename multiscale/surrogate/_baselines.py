"""Closure baselines practitioners use for two-scale Lorenz-96:
the deterministic polynomial closure fitted to the tendency residual (Arnold, Moroz & Palmer,
Phil. Trans. R. Soc. A 371 (2013) 20110479) and the same plus AR(1) residual noise per site
(Wilks, QJRMS 131 (2005) 389)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class PolynomialClosure:
    """``dX_k/dt = R_k(X) + P(X_k) + e_k(t)``: ``P`` a polynomial of degree ``degree`` in the
    site's own value; ``e_k`` an AR(1) process (lag-one autocorrelation ``phi`` per sampling
    interval ``h``, stationary standard deviation ``sigma_e``), or zero for the deterministic
    closure (``noise=False``)."""

    coefficients: np.ndarray  # P's coefficients, lowest degree first
    phi: float = 0.0
    sigma_e: float = 0.0
    h: float = 1.0
    noise: bool = False

    @classmethod
    def fit(cls, arr: np.ndarray, h: float, resolved: Any, params: Any = None, *, degree: int = 3,
            noise: bool = True) -> "PolynomialClosure":
        """From coarse trajectories ``arr (paths, times, K)`` sampled every ``h``: the tendency
        residual ``(X(t+h) - X(t))/h - R(X(t))`` regressed on a polynomial of ``X_k(t)`` (all
        sites pooled), and the AR(1) fit of what is left, per path and site in time."""
        arr = np.asarray(arr, float)
        if arr.ndim != 3 or arr.shape[1] < 4 or not np.all(np.isfinite(arr)):
            raise ValueError(f"arr must be a finite (paths, times >= 4, K) array; got shape {arr.shape}")
        if not (math.isfinite(h) and h > 0):
            raise ValueError(f"h={h!r} must be positive and finite")
        if isinstance(degree, bool) or not isinstance(degree, int) or not 0 <= degree <= 9:
            raise ValueError(f"degree={degree!r} must be an integer in [0, 9]")
        P, T, K = arr.shape
        f = resolved.numpy_functions(params) if resolved is not None else None
        x0 = arr[:, :-1].reshape(-1, K)
        R = f.slow_drift(x0) if f is not None else np.zeros_like(x0)
        r = ((arr[:, 1:] - arr[:, :-1]).reshape(-1, K) / h - R).ravel()
        V = np.vander(x0.ravel(), degree + 1, increasing=True)
        coef, *_ = np.linalg.lstsq(V, r, rcond=None)
        e = (r - V @ coef).reshape(P, T - 1, K)
        e0, e1 = e[:, :-1].ravel(), e[:, 1:].ravel()
        # AR(1) at the sampling interval; a negative lag-one correlation (residuals that alternate,
        # as Euler differences of a rough signal can) has no continuous-time AR(1) to hold over
        # other steps, so it is taken as white (phi = 0).
        phi = min(max(float(np.dot(e0, e1) / np.dot(e0, e0)), 0.0), 1.0 - 1e-12)
        return cls(coef, phi=phi, sigma_e=float(e.std()), h=float(h), noise=noise)

    def closure(self, x: np.ndarray) -> np.ndarray:
        """The polynomial closure ``P(x)`` at site values ``x`` (any shape)."""
        return np.polynomial.polynomial.polyval(x, self.coefficients)

    def simulate(self, resolved: Any, params: Any, x0: np.ndarray, t_end: float, dt: float, seed: int = 0,
                 save_every: int = 1) -> np.ndarray:
        """RK2 (Heun) for the deterministic part with the AR(1) term held over each step (as in
        Wilks 2005), ``x0 (paths, K)``; returns ``(paths, saves, K)``."""
        f = resolved.numpy_functions(params) if resolved is not None else None
        rng = np.random.default_rng(seed)
        x = np.array(x0, float)
        if x.ndim != 2 or not np.all(np.isfinite(x)):
            raise ValueError(f"x0 must be a finite (paths, K) array; got shape {x.shape}")
        n = int(round(t_end / dt))
        if not (dt > 0 and n >= 1 and abs(n * dt - t_end) <= 1e-9 * t_end):
            raise ValueError(f"t_end={t_end!r} must be a positive multiple of dt={dt!r}")
        phi_dt = self.phi ** (dt / self.h) if self.noise else 0.0
        e = self.sigma_e * rng.standard_normal(x.shape) if self.noise else np.zeros_like(x)
        out = [x.copy()]

        def tend(y: np.ndarray) -> np.ndarray:
            return (f.slow_drift(y) if f is not None else 0.0) + self.closure(y) + e

        for step in range(1, n + 1):
            k1 = tend(x)
            k2 = tend(x + dt * k1)
            x = x + 0.5 * dt * (k1 + k2)
            if self.noise:
                e = phi_dt * e + self.sigma_e * math.sqrt(max(1 - phi_dt**2, 0.0)) * rng.standard_normal(x.shape)
            if step % save_every == 0:
                out.append(x.copy())
        return np.stack(out, 1)
