"""Exact reference answers computed by quadrature, for tests, validation and reports.

These are mathematics, independent of the simulators: stationary laws of 1-D diffusions and
closed-form Ornstein-Uhlenbeck and Euler-Maruyama moments.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
from scipy import integrate


def stationary_moments_1d(log_density: Callable[[np.ndarray], np.ndarray], powers=(1, 2, 4),
                          lo: float = -np.inf, hi: float = np.inf) -> dict[int, float]:
    """Moments ``E[X^k]`` of the density proportional to ``exp(log_density(x))``.

    Parameters
    ----------
    log_density : callable
        Unnormalised log-density (vectorised).
    powers : iterable of int
    lo, hi : float
        Support.
    """
    # Shift by the maximum on a grid so exp() neither overflows nor underflows.
    grid = np.linspace(-20 if lo == -np.inf else lo, 20 if hi == np.inf else hi, 4001)
    shift = float(np.max(log_density(grid)))

    def w(x: float) -> float:
        return math.exp(float(log_density(np.asarray(x))) - shift)

    opts = dict(limit=400, epsabs=0.0, epsrel=1e-13)
    z = integrate.quad(w, lo, hi, **opts)[0]
    return {k: integrate.quad(lambda x, k=k: x**k * w(x), lo, hi, **opts)[0] / z for k in powers}


def averaged_gradient_moments(potential: Callable[[np.ndarray], np.ndarray], sigma: float,
                              powers=(1, 2, 4)) -> dict[int, float]:
    """Moments of the stationary law of ``dX = -U'(X) dt + sigma dW``: density ``exp(-2U/sigma^2)``."""
    return stationary_moments_1d(lambda x: -2.0 * potential(x) / sigma**2, powers)


def fast_ou_linear_moments(c: float = 0.5, sigma: float = 1.0, powers=(1, 2, 4)) -> dict[int, float]:
    """REFERENCE problem 1a: averaged drift ``(1+c)x - x^3``; exact stationary moments of the
    averaged SDE (the eps -> 0 limit of the full system's X-marginal)."""
    return averaged_gradient_moments(lambda x: -(1 + c) * x**2 / 2 + x**4 / 4, sigma, powers)


def fast_ou_quadratic_moments(c: float = 0.5, sigma: float = 1.0, powers=(1, 2, 4)) -> dict[int, float]:
    """REFERENCE problem 1b: ``E[Y^2 | x] = x^2 + 1`` gives averaged drift ``c + x + c x^2 - x^3``."""
    return averaged_gradient_moments(lambda x: -(c * x + x**2 / 2 + c * x**3 / 3 - x**4 / 4), sigma, powers)


def fast_ou_noise_moments(powers=(2, 4), ito_correction: bool = True) -> dict[int, float]:
    """REFERENCE problem 4: the homogenized limit has density ``(1+x^2)^{-1/2} e^{-x^2/2}``.

    ``ito_correction=False`` gives the *wrong* limit (no ``f f'`` drift), density
    ``(1+x^2)^{-1} e^{-x^2/2}``; a correct simulator must converge to the first, not this.
    """
    a = 0.5 if ito_correction else 1.0
    return stationary_moments_1d(lambda x: -a * np.log1p(x**2) - x**2 / 2, powers)


def ou_second_moment(t: float, theta: float, D: float, x0: float) -> float:
    """``E[X_t^2]`` for ``dX = -theta X dt + sqrt(2D) dW``, ``X_0 = x0``."""
    e = math.exp(-2 * theta * t)
    return x0**2 * e + D / theta * (1 - e)


def ou_euler_second_moment(n: int, dt: float, theta: float, D: float, x0: float) -> float:
    """``E[X_n^2]`` of the Euler-Maruyama chain ``X_{k+1} = (1 - theta dt) X_k + sqrt(2 D dt) Z``
    (exact for the discrete scheme; its difference from :func:`ou_second_moment` is the weak
    error, O(dt))."""
    a2 = (1 - theta * dt) ** 2
    return x0**2 * a2**n + 2 * D * dt * (1 - a2**n) / (1 - a2)


def euler_ou_fast_variance(h: float) -> float:
    """Stationary variance of Euler-Maruyama for the unit OU ``dY = -Y ds + sqrt(2) dW`` at step
    ``h`` (fast time): ``1/(1 - h/2)``; exact value 1."""
    return 1.0 / (1.0 - h / 2.0)
