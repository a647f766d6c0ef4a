"""Exact reference answers computed by quadrature, for tests, validation and reports.

These are mathematics, independent of the simulators: stationary laws of 1-D diffusions and
closed-form Ornstein-Uhlenbeck and Euler-Maruyama moments. "Reference problem N" is a section
of ``docs/reference_problems.md`` (in the source distribution and the repository), which states
each problem's equations and exact answers and names the function here that computes them.
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
    """Reference problem 1a: averaged drift ``(1+c)x - x^3``; exact stationary moments of the
    averaged SDE (the eps -> 0 limit of the full system's X-marginal)."""
    return averaged_gradient_moments(lambda x: -(1 + c) * x**2 / 2 + x**4 / 4, sigma, powers)


def fast_ou_quadratic_moments(c: float = 0.5, sigma: float = 1.0, powers=(1, 2, 4)) -> dict[int, float]:
    """Reference problem 1b: ``E[Y^2 | x] = x^2 + 1`` gives averaged drift ``c + x + c x^2 - x^3``."""
    return averaged_gradient_moments(lambda x: -(c * x + x**2 / 2 + c * x**3 / 3 - x**4 / 4), sigma, powers)


def fast_ou_noise_moments(powers=(2, 4), ito_correction: bool = True) -> dict[int, float]:
    """Reference problem 4: the homogenized limit has density ``(1+x^2)^{-1/2} e^{-x^2/2}``.

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


def fast_ou_quadratic_euler_moments(h: float, c: float = 0.5, sigma: float = 1.0,
                                    powers=(1, 2, 4)) -> dict[int, float]:
    """Reference problem 1b when the fast OU is advanced by Euler-Maruyama at step ``h = dt/eps``.

    As ``eps -> 0`` at fixed ``h`` the Euler chain for the fast OU has the stationary law
    ``N(x, v)`` with ``v = 1/(1 - h/2)`` (:func:`euler_ou_fast_variance`) instead of
    ``N(x, 1)``, so ``E[Y^2 | x] = x^2 + v`` and the averaged drift becomes
    ``c v + x + c x^2 - x^3``. These are the exact stationary moments of that biased averaged
    SDE; ``h = 0`` gives :func:`fast_ou_quadratic_moments`.

    Parameters
    ----------
    h : float
        Fast step ``dt/eps``, in ``[0, 2)``.
    c, sigma : float
        Coupling and slow noise amplitude.
    powers : iterable of int

    Returns
    -------
    dict
        ``{k: E[X^k]}``.
    """
    if not 0.0 <= h < 2.0:
        raise ValueError(f"h={h!r}: the Euler OU chain is stable only for 0 <= h < 2")
    v = euler_ou_fast_variance(h)
    return averaged_gradient_moments(
        lambda x: -(c * v * x + x**2 / 2 + c * x**3 / 3 - x**4 / 4), sigma, powers)


def _gaussian_moment(mu: np.ndarray, k: int) -> np.ndarray:
    """``E[(mu + Z)^k]`` for ``Z ~ N(0, 1)``."""
    out = np.zeros_like(mu, dtype=float)
    for j in range(0, k + 1, 2):  # odd moments of Z vanish; E[Z^j] = (j-1)!!
        out = out + math.comb(k, j) * float(np.prod(np.arange(j - 1, 0, -2))) * mu ** (k - j)
    return out


def tilted_double_well_log_partition(s: float) -> float:
    """``log Z(s)``, ``Z(s) = int exp(-y^4/4 + y^2/2 + s y) dy`` (reference problem 2), by quadrature.

    ``Z(lam x)`` normalises the frozen fast law ``mu_x(dy) ∝ exp(-y^4/4 + y^2/2 + lam x y) dy``;
    the log form stays finite for large ``|s|`` where ``Z`` itself overflows.

    Parameters
    ----------
    s : float
        Tilt, ``lam * x`` for the frozen slow value ``x``.

    Returns
    -------
    float
        ``log Z(s)``; ``d/ds log Z = E_{mu}[Y]`` and ``d^2/ds^2 log Z = Var_{mu}(Y)``.
    """
    s = float(s)
    # Centre the exponent at its maximiser y* (the largest real root of y^3 - y - s).
    roots = np.roots([1.0, 0.0, -1.0, -s])
    real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
    y_star = float(real[-1]) if s >= 0 else float(real[0])  # the global maximiser
    shift = -y_star**4 / 4 + y_star**2 / 2 + s * y_star
    # Finite range: beyond y* -/+ w the integrand is below exp(-800) (curvature >= 3 y*^2 - 1).
    w = 40.0 / math.sqrt(max(3.0 * y_star**2 - 1.0, 1.0))
    lo, hi = min(-8.0, y_star - w), max(8.0, y_star + w)
    val = integrate.quad(lambda y: math.exp(-y**4 / 4 + y**2 / 2 + s * y - shift), lo, hi,
                         points=[float(r) for r in real], limit=400, epsabs=0.0, epsrel=1e-13)[0]
    return shift + math.log(val)


def tilted_double_well_x_log_density(x: np.ndarray, a0: float = 0.1, lam: float = 1.5) -> np.ndarray:
    """Unnormalised log of the invariant X-marginal of reference problem 2.

    ``a0 x - x^2/2 + log Z(lam x)``: exact for the full system at every eps, and the invariant
    density of the averaged SDE. Pass it to :func:`stationary_moments_1d` for the X-route of
    :func:`tilted_double_well_moments` (about a second: one quadrature per point).

    Parameters
    ----------
    x : array_like
    a0, lam : float
        Constant slow forcing and slow/fast coupling.

    Returns
    -------
    numpy.ndarray
        The log-density at ``x`` (same shape).
    """
    x = np.asarray(x, dtype=float)
    logz = np.vectorize(tilted_double_well_log_partition, otypes=[float])(lam * x)
    return a0 * x - x**2 / 2 + logz


def _tilted_double_well_y_law(a0: float, lam: float):
    """Y-marginal of ``exp(-H)``, ``H = x^2/2 - a0 x - lam x y + y^4/4 - y^2/2``: integrating the
    Gaussian in ``x`` gives ``rho_Y(y) ∝ exp(-y^4/4 + y^2/2 + (a0 + lam y)^2/2)`` and
    ``X | Y=y ~ N(a0 + lam y, 1)``. Returns (weight, normaliser) for 1-D quadrature."""
    def logw(y: float) -> float:
        return -y**4 / 4 + y**2 / 2 + (a0 + lam * y) ** 2 / 2

    grid = np.linspace(-10.0, 10.0, 20001)
    shift = float(np.max(logw(grid)))

    def w(y: float) -> float:
        return math.exp(logw(y) - shift)

    opts = dict(limit=400, epsabs=0.0, epsrel=1e-13)
    z = integrate.quad(w, -np.inf, np.inf, **opts)[0]
    return w, z, opts


def tilted_double_well_moments(a0: float = 0.1, lam: float = 1.5, powers=(1, 2, 4)) -> dict[int, float]:
    """Reference problem 2: exact moments ``E[X^k]`` of the invariant X-marginal,
    ``rho(x) ∝ exp(a0 x - x^2/2) Z(lam x)``.

    The full system is the reversible gradient system of ``H`` at unit temperature, so these are
    its exact invariant moments for every ``eps > 0`` (and those of the averaged SDE). Computed
    through the Y-marginal (see ``_tilted_double_well_y_law``): ``E[X^k] = E[E[(a0 + lam Y + Z)^k]]``,
    one 1-D quadrature per power; :func:`tilted_double_well_x_log_density` gives the
    independent X-route.

    Parameters
    ----------
    a0, lam : float
        Constant slow forcing and slow/fast coupling.
    powers : iterable of int

    Returns
    -------
    dict
        ``{k: E[X^k]}``; the reference values are ``E[X] = 0.7294113355`` and
        ``E[X^2] = 7.5992550`` for the defaults.
    """
    w, z, opts = _tilted_double_well_y_law(a0, lam)
    out = {}
    for k in powers:
        f = (lambda y, k=k: float(_gaussian_moment(np.asarray(a0 + lam * y), k)) * w(y))
        out[k] = integrate.quad(f, -np.inf, np.inf, **opts)[0] / z
    return out


def tilted_double_well_prob_positive(a0: float = 0.1, lam: float = 1.5) -> float:
    """Reference problem 2: ``P(X > 0)`` under the invariant law.

    Computed as ``E[Phi(a0 + lam Y)]`` over the Y-marginal (``X | Y ~ N(a0 + lam Y, 1)``).

    Parameters
    ----------
    a0, lam : float
        Constant slow forcing and slow/fast coupling.

    Returns
    -------
    float
        ``P(X > 0)``; 0.6202436866 for the defaults.
    """
    from scipy.special import ndtr

    w, z, opts = _tilted_double_well_y_law(a0, lam)
    return integrate.quad(lambda y: float(ndtr(a0 + lam * y)) * w(y), -np.inf, np.inf, **opts)[0] / z


def _periodic_base_potential(potential: str) -> Callable[[np.ndarray], np.ndarray]:
    if potential == "quadratic":
        return lambda x: x**2 / 2
    if potential == "quartic":
        return lambda x: x**4 / 4 - x**2 / 2
    raise ValueError(f"potential={potential!r} must be 'quadratic' (3a) or 'quartic' (3b)")


def periodic_homogenized_K(A: float = 1.0, sigma: float = 0.5) -> float:
    """Reference problem 3: the homogenization factor ``K = L^2 / (Z Zhat)`` of a period-1
    potential ``p(y) = A cos(2 pi y)`` at temperature ``sigma``, by quadrature of
    ``Z = int_0^1 exp(-p/sigma)`` and ``Zhat = int_0^1 exp(+p/sigma)``.

    The homogenized SDE is ``dX = -K V'(X) dt + sqrt(2 sigma K) dW``; the effective
    diffusivity is ``sigma K`` (Lifson-Jackson). For the cosine, ``K = 1/I0(A/sigma)^2``.
    """
    opts = dict(epsabs=0.0, epsrel=1e-13, limit=200)
    Z = integrate.quad(lambda y: math.exp(-A * math.cos(2 * math.pi * y) / sigma), 0.0, 1.0, **opts)[0]
    Zh = integrate.quad(lambda y: math.exp(A * math.cos(2 * math.pi * y) / sigma), 0.0, 1.0, **opts)[0]
    return 1.0 / (Z * Zh)


def periodic_potential_moments(potential: str = "quadratic", sigma: float = 0.5, A: float = 1.0,
                               eps: float | None = None, powers=(2, 4)) -> dict[int, float]:
    """Reference problem 3: invariant moments of ``dX = -V'(X) dt - (1/eps) p'(X/eps) dt +
    sqrt(2 sigma) dW`` with ``p(y) = A cos(2 pi y)``.

    Parameters
    ----------
    potential : {"quadratic", "quartic"}
        ``V = x^2/2`` (3a) or ``V = x^4/4 - x^2/2`` (3b).
    sigma, A : float
        Temperature and amplitude of the periodic potential.
    eps : float, optional
        None: the homogenized invariant law ``∝ exp(-V/sigma)`` (for 3a, ``E[X^2] = sigma``).
        A number: the exact finite-eps law ``∝ exp(-(V(x) + p(x/eps))/sigma)``, whose moments
        differ from the homogenized ones by ``O(exp(-2 pi^2 sigma/eps^2))``; computed by the
        trapezoid rule on a grid of spacing ``eps/400`` (spectrally accurate for this entire,
        rapidly decaying integrand).
    powers : iterable of int

    Returns
    -------
    dict
        ``{k: E[X^k]}``.
    """
    V = _periodic_base_potential(potential)
    if eps is None:
        return stationary_moments_1d(lambda x: -V(x) / sigma, powers)
    # Support: |x| <= L with (V(L) - |A|)/sigma beyond the double-precision underflow.
    L = 1.0
    while (float(V(np.asarray(L))) - abs(A)) / sigma < 760.0:
        L *= 1.5
    n = int(math.ceil(2 * L / (eps / 400.0))) + 1
    x = np.linspace(-L, L, n)
    logw = -(V(x) + A * np.cos(2 * np.pi * x / eps)) / sigma
    w = np.exp(logw - logw.max())
    z = w.sum()
    return {k: float(np.sum(x**k * w) / z) for k in powers}


def double_well_moments(sigma: float = 0.4, powers=(2, 4)) -> dict[int, float]:
    """Reference problem 5: stationary moments of ``dX = (X - X^3) dt + sigma dW``.

    The density is ``∝ exp(-2U/sigma^2)``, ``U = x^4/4 - x^2/2``; odd moments vanish and
    ``E[X^4] = E[X^2] + sigma^2/2`` (from ``E[L x^2] = 0``).

    Parameters
    ----------
    sigma : float
        Noise amplitude.
    powers : iterable of int

    Returns
    -------
    dict
        ``{k: E[X^k]}``.
    """
    return averaged_gradient_moments(lambda x: x**4 / 4 - x**2 / 2, sigma, powers)


def fast_ou_linear_drift(x, c: float = 0.5) -> np.ndarray:
    """Reference problem 1a: the averaged drift ``F(x) = (1 + c) x - x^3``.

    The frozen fast process ``dY = -(Y - x) ds + sqrt(2) dW`` has invariant law ``N(x, 1)``, so
    ``F(x) = x - x^3 + c E[Y] = (1 + c) x - x^3`` (``1.5 x - x^3`` for the default ``c``). The
    Euler-Maruyama fast chain has mean ``x`` at every step size, so this is also the averaged
    drift of an Euler fast step.

    Parameters
    ----------
    x : array_like
        Frozen slow values.
    c : float
        Coupling to the fast variable.

    Returns
    -------
    numpy.ndarray
        ``F(x)``, same shape as ``x``.
    """
    x = np.asarray(x, dtype=float)
    return (1.0 + c) * x - x**3


def fast_ou_quadratic_drift(x, c: float = 0.5, h: float = 0.0) -> np.ndarray:
    """Reference problem 1b: the averaged drift ``F(x) = c E[Y^2 | x] + x - x^3``.

    With the exact fast process (``h = 0``) ``E[Y^2 | x] = x^2 + 1`` and
    ``F = c + x + c x^2 - x^3``. When the fast OU is advanced by Euler-Maruyama at fast step
    ``h``, its stationary law is ``N(x, v)`` with ``v = 1/(1 - h/2)``
    (:func:`euler_ou_fast_variance`), so the frozen-x average of the Euler chain is
    ``c (x^2 + v) + x - x^3``: biased by ``c (v - 1) ≈ c h/2``.

    Parameters
    ----------
    x : array_like
        Frozen slow values.
    c : float
        Coupling to the fast variable.
    h : float
        Euler fast step (fast time units) in ``[0, 2)``; 0 for the exact OU transition.

    Returns
    -------
    numpy.ndarray
        ``F(x)``, same shape as ``x``.
    """
    if not 0.0 <= h < 2.0:
        raise ValueError(f"h={h!r}: the Euler OU chain is stable only for 0 <= h < 2")
    x = np.asarray(x, dtype=float)
    return c * (x**2 + euler_ou_fast_variance(h)) + x - x**3


def _tilted_double_well_moment_ratio(s: float, k: int) -> float:
    """``int y^k e^{-y^4/4 + y^2/2 + s y} dy / Z(s)`` by quadrature, the exponent centred at its
    global maximiser (as in :func:`tilted_double_well_log_partition`) so nothing overflows."""
    s = float(s)
    roots = np.roots([1.0, 0.0, -1.0, -s])
    real = np.sort(roots[np.abs(roots.imag) < 1e-9].real)
    y_star = float(real[-1]) if s >= 0 else float(real[0])
    shift = -y_star**4 / 4 + y_star**2 / 2 + s * y_star
    w = 40.0 / math.sqrt(max(3.0 * y_star**2 - 1.0, 1.0))
    lo, hi = min(-8.0, y_star - w), max(8.0, y_star + w)
    opts = dict(points=[float(r) for r in real], limit=400, epsabs=0.0, epsrel=1e-13)

    def weight(y: float) -> float:
        return math.exp(-y**4 / 4 + y**2 / 2 + s * y - shift)

    z = integrate.quad(weight, lo, hi, **opts)[0]
    # Integrate y^k relative to y* so the moment of the centred integrand carries no
    # cancellation for large |s| (E[Y] ≈ y*); then expand (y* + u)^k.
    # (centred odd moments can be ~0, so they get an absolute tolerance; z is O(0.1) or more
    # since the centred weight is 1 at y*)
    opts_c = dict(opts, epsabs=1e-13)
    mom = [1.0] + [integrate.quad(lambda y, j=j: (y - y_star) ** j * weight(y), lo, hi, **opts_c)[0] / z
                   for j in range(1, k + 1)]
    return float(sum(math.comb(k, j) * y_star ** (k - j) * mom[j] for j in range(k + 1)))


def tilted_double_well_fast_mean(s) -> np.ndarray:
    """Reference problem 2: ``m(s) = E_mu[Y] = d/ds log Z(s)`` of the tilted fast double well.

    ``mu(dy) ∝ exp(-y^4/4 + y^2/2 + s y) dy``; ``m`` is odd and increasing. Computed as the
    ratio of two quadratures (:func:`tilted_double_well_log_partition` gives an independent
    route through its derivative).

    Parameters
    ----------
    s : array_like
        Tilt, ``lam * x``.

    Returns
    -------
    numpy.ndarray
        ``m(s)``, same shape as ``s``; e.g. ``m(1.5) = 1.1488287996``.
    """
    return np.vectorize(lambda v: _tilted_double_well_moment_ratio(v, 1), otypes=[float])(
        np.asarray(s, dtype=float))


def tilted_double_well_fast_second_moment(s) -> np.ndarray:
    """Reference problem 2: ``E_mu[Y^2]`` of the tilted fast double well (see
    :func:`tilted_double_well_fast_mean`).

    Parameters
    ----------
    s : array_like
        Tilt, ``lam * x``.

    Returns
    -------
    numpy.ndarray
        ``E[Y^2]``, same shape as ``s``; ``1.0417972965`` at ``s = 0``.
    """
    return np.vectorize(lambda v: _tilted_double_well_moment_ratio(v, 2), otypes=[float])(
        np.asarray(s, dtype=float))


def tilted_double_well_drift(x, a0: float = 0.1, lam: float = 1.5) -> np.ndarray:
    """Reference problem 2: the averaged drift ``F(x) = a0 - x + lam m(lam x)``.

    ``m`` is the mean of the frozen fast law (:func:`tilted_double_well_fast_mean`). ``F - a0``
    is odd; for the defaults ``F(-1) = -0.623243199463``, ``F(0) = 0.1``,
    ``F(1) = 0.823243199463``, ``F(2.5) = 0.117384532605``.

    Parameters
    ----------
    x : array_like
        Frozen slow values.
    a0, lam : float
        Constant slow forcing and slow/fast coupling.

    Returns
    -------
    numpy.ndarray
        ``F(x)``, same shape as ``x``.
    """
    x = np.asarray(x, dtype=float)
    return a0 - x + lam * tilted_double_well_fast_mean(lam * x)


def fast_ou_noise_drift(x, ito_correction: bool = True) -> np.ndarray:
    """Reference problem 4: drift of the homogenized SDE, ``h + f f' = -x^3``.

    ``h = -x - x^3``, ``f = sqrt(1 + x^2)``, ``f f' = x``: the corrector term
    ``E[(d/dx Phi) f0] = x`` (``Phi = f(x) y``). ``ito_correction=False`` gives the wrong limit
    ``-x - x^3`` (see :func:`fast_ou_noise_moments`).

    Parameters
    ----------
    x : array_like
    ito_correction : bool

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``.
    """
    x = np.asarray(x, dtype=float)
    return -x**3 if ito_correction else -x - x**3


def fast_ou_noise_diffusion(x) -> np.ndarray:
    """Reference problem 4: diffusion ``A(x) = 2 f(x)^2 = 2 (1 + x^2)`` of the homogenized SDE.

    The Green-Kubo integral ``2 int_0^inf E[f Y_0 f Y_t] dt`` with ``E[Y_0 Y_t] = e^{-t}``.

    Parameters
    ----------
    x : array_like

    Returns
    -------
    numpy.ndarray
        ``A(x)``, the quadratic-variation rate of the limit, same shape as ``x``.
    """
    x = np.asarray(x, dtype=float)
    return 2.0 * (1.0 + x**2)


def fast_ou_drift_correlation_time(x, coupling: str = "linear") -> np.ndarray:
    """Reference problems 1a/1b: integrated autocorrelation time ``int_0^inf corr(f(Y_0), f(Y_s)) ds``
    of the slow drift along the frozen fast OU process (fast time units).

    With ``Y = x + U``, ``U`` the unit OU (``E[U_0 U_s] = e^{-s}``): for ``f = c Y`` (1a) the
    correlation is ``e^{-s}``, time 1; for ``f = c Y^2`` (1b)
    ``Cov(Y_0^2, Y_s^2) = 4 x^2 e^{-s} + 2 e^{-2s}`` over ``Var = 4 x^2 + 2``, time
    ``(4 x^2 + 1)/(4 x^2 + 2)``. The standard error of a time average over ``T`` is
    ``sqrt(2 tau Var f / T)``.

    Parameters
    ----------
    x : array_like
        Frozen slow values.
    coupling : {"linear", "quadratic"}
        Problem 1a or 1b.

    Returns
    -------
    numpy.ndarray
        Same shape as ``x``.
    """
    x = np.asarray(x, dtype=float)
    if coupling == "linear":
        return np.ones_like(x)
    if coupling == "quadratic":
        return (4 * x**2 + 1) / (4 * x**2 + 2)
    raise ValueError(f"coupling={coupling!r} must be 'linear' (1a) or 'quadratic' (1b)")
