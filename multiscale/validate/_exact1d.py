"""Exact answers for one-dimensional Itô diffusions by quadrature.

Convention: ``dX = b(X) dt + sigma(X) dW`` with diffusion ``A = sigma^2`` and generator
``L f = b f' + (A/2) f''``.  Everything follows from the scale exponent

    Phi(x) = -int 2 b / A dx,

the scale density ``s = exp(Phi)`` and the (unnormalised) speed density
``rho = exp(-Phi) / A``, which is the stationary density under reflection.

Drift and diffusion are vectorised callables: a 1-D float64 array in, an array of the same
shape out.  Exponents are always shifted by their maximum before ``exp`` so that barriers of
tens of ``kT`` neither overflow nor underflow; integrals use composite Simpson on fine uniform
grids (relative accuracy about 1e-8 or better on smooth problems with the defaults).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import integrate, interpolate, optimize
from scipy.linalg import eigh_tridiagonal

from .._checks import finite, finite_interval, increasing_array, nonnegative_finite, whole_number

Field = Callable[[np.ndarray], np.ndarray]

# Log-ratio below which the density is treated as negligible when a range is chosen
# automatically: exp(-50) ~ 2e-22, far below the 1e-8 accuracy target.
_TAIL_LOG = 50.0
# Largest half-width tried when searching for a negligible tail.
_MAX_WIDTH = 1e6


def _evaluate(func: Field, x: np.ndarray, name: str, positive: bool = False) -> np.ndarray:
    """Evaluate a vectorised coefficient and reject wrong shapes and bad values."""
    y = np.asarray(func(x), dtype=np.float64)
    if y.shape != x.shape:
        if y.ndim == 0:
            # A constant returned as a scalar is harmless: broadcast it.
            y = np.full(x.shape, float(y))
        else:
            raise ValueError(f"{name} returned shape {y.shape} for input shape {x.shape}")
    bad = ~np.isfinite(y)
    if positive:
        bad |= ~(y > 0)
    if np.any(bad):
        i = int(np.argmax(bad))
        what = "finite and positive" if positive else "finite"
        raise ValueError(f"{name} must be {what} on the grid; got {name}({x[i]:.17g}) = {float(y[i])!r}")
    return y


def _cumsimpson(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Cumulative composite Simpson integral from ``x[0]`` (0 at ``x[0]``), shape of ``y``."""
    return integrate.cumulative_simpson(y, x=x, initial=0.0)


def scale_exponent(drift: Field, diffusion: Field, grid: np.ndarray) -> np.ndarray:
    """Scale exponent ``Phi(x) = -int_{grid[0]}^x 2 b(y) / A(y) dy``.

    Parameters
    ----------
    drift, diffusion : callable
        ``b`` (units of x per time) and ``A = sigma^2`` (x^2 per time), vectorised.
    grid : ndarray, shape (n,)
        Strictly increasing points, ``n >= 3``.

    Returns
    -------
    Phi : ndarray, shape (n,)
        Dimensionless; ``Phi[0] = 0``.  The stationary density is ``exp(-Phi) / A`` (up to
        normalisation) and the scale density is ``exp(Phi)``.
    """
    x = increasing_array("grid", grid, 3)
    b = _evaluate(drift, x, "drift")
    a = _evaluate(diffusion, x, "diffusion", positive=True)
    return -_cumsimpson(2.0 * b / a, x)


def _log_density(drift: Field, diffusion: Field, x: np.ndarray) -> np.ndarray:
    """Unnormalised log stationary density ``-Phi - log A`` on ``x``."""
    phi = scale_exponent(drift, diffusion, x)
    return -phi - np.log(_evaluate(diffusion, x, "diffusion", positive=True))


def stationary_density(drift: Field, diffusion: Field, lo: float, hi: float,
                       n: int = 20001) -> tuple[np.ndarray, np.ndarray]:
    """Stationary density of the diffusion reflected at ``lo`` and ``hi``.

    Parameters
    ----------
    drift, diffusion : callable
        ``b`` and ``A = sigma^2``, vectorised.
    lo, hi : float
        Reflecting boundaries, ``lo < hi``.
    n : int
        Number of uniform grid points (odd is best for Simpson).

    Returns
    -------
    x : ndarray, shape (n,)
    rho : ndarray, shape (n,)
        Density in 1/(units of x), ``rho ∝ exp(-Phi) / A``, integrating to 1 on ``[lo, hi]``
        by composite Simpson.
    """
    lo, hi = finite_interval(lo, hi)
    x = np.linspace(lo, hi, whole_number("n", n, 5))
    logrho = _log_density(drift, diffusion, x)
    rho = np.exp(logrho - logrho.max())  # shift: the largest term is exactly 1
    return x, rho / integrate.simpson(rho, x=x)


def effective_potential(drift: Field, diffusion: Field, lo: float, hi: float,
                        n: int = 20001) -> tuple[np.ndarray, np.ndarray]:
    """Effective potential ``U = -log rho`` in units of kT, shifted so that ``min U = 0``.

    Returns
    -------
    x, U : ndarray, shape (n,)
    """
    lo, hi = finite_interval(lo, hi)
    x = np.linspace(lo, hi, whole_number("n", n, 5))
    u = -_log_density(drift, diffusion, x)
    return x, u - u.min()


@dataclass(frozen=True)
class Well:
    """A metastable set of a 1-D diffusion.

    Attributes
    ----------
    minimum : float
        Location of the minimum of the effective potential ``U`` (units of x).
    basin : tuple of float
        ``(left, right)``: the neighbouring saddles (maxima of ``U``) or the interval ends.
    depth : float
        ``U(saddle) - U(minimum)`` in kT for the lower of the two saddles; ``inf`` when the
        well has no saddle (the only well).
    """

    minimum: float
    basin: tuple[float, float]
    depth: float


def _refine_extremum(drift: Field, diffusion: Field, x: np.ndarray, i: int) -> float:
    """Zero of ``U' = (A' - 2b) / A`` bracketed around grid point ``i`` (grid value if none)."""
    if i == 0 or i == x.size - 1:
        return float(x[i])
    h = 1e-6 * max(1.0, abs(float(x[i])))

    def g(t: float) -> float:
        # Central difference for A': error O(h^2) ~ 1e-12, and exactly 0 for constant A.
        t3 = np.array([t - h, t, t + h])
        a = _evaluate(diffusion, t3, "diffusion", positive=True)
        b = _evaluate(drift, t3[1:2], "drift")[0]
        return float((a[2] - a[0]) / (2 * h) - 2 * b)

    left, right = float(x[i - 1]), float(x[i + 1])
    gl, gr = g(left), g(right)
    if gl == 0.0:
        return left
    if gr == 0.0:
        return right
    if gl * gr > 0:
        return float(x[i])
    return float(optimize.brentq(g, left, right, xtol=1e-14, rtol=4 * np.finfo(float).eps))


def find_wells(drift: Field, diffusion: Field, lo: float, hi: float, n: int = 20001,
               min_depth: float = 1e-3) -> list[Well]:
    """Metastable sets: minima of the effective potential ``U = -log rho``.

    ``U`` (not the zeros of ``b``) is the right landscape when ``A`` depends on ``x``.
    Basins are bounded by the neighbouring maxima of ``U`` (saddles) or by ``lo``/``hi``;
    an end of the interval is a well when ``U`` decreases towards it.  Wells shallower than
    ``min_depth`` (kT) are merged into their neighbour across their lower saddle, repeatedly,
    so numerical or physical wiggles do not count as metastable sets.

    Parameters
    ----------
    drift, diffusion : callable
    lo, hi : float
        Interval searched (reflecting ends).
    n : int
        Grid points; minima and saddles are then refined by root finding on ``U'``.
    min_depth : float
        Smallest depth (kT) of a reported well.

    Returns
    -------
    list of Well, sorted by ``minimum``.
    """
    min_depth = nonnegative_finite("min_depth", min_depth)
    x, u = effective_potential(drift, diffusion, lo, hi, n)
    du = np.diff(u)
    # Sign of the slope, with flat steps taking the sign of the previous step.
    sgn = np.sign(du)
    for j in range(1, sgn.size):
        if sgn[j] == 0:
            sgn[j] = sgn[j - 1]
    # Alternating extrema: interior sign changes, plus the ends when U decreases towards them.
    minima: list[int] = []
    saddles: list[int] = []
    if sgn[0] > 0:
        minima.append(0)
    for j in np.nonzero(sgn[1:] != sgn[:-1])[0] + 1:
        (minima if sgn[j - 1] < 0 else saddles).append(int(j))
    if sgn[-1] < 0:
        minima.append(x.size - 1)
    # Drop saddles that are not between two minima (a maximum next to a reflecting end).
    if saddles and (not minima or saddles[0] < minima[0]):
        saddles.pop(0)
    if saddles and saddles[-1] > minima[-1]:
        saddles.pop()
    # Merge shallow wells: remove the saddle that bounds the shallowest well.
    while saddles:
        barrier = [u[s] - min(u[minima[j]], u[minima[j + 1]]) for j, s in enumerate(saddles)]
        j = int(np.argmin(barrier))
        if barrier[j] >= min_depth:
            break
        keep = minima[j] if u[minima[j]] <= u[minima[j + 1]] else minima[j + 1]
        minima[j:j + 2] = [keep]
        saddles.pop(j)
    xm = [_refine_extremum(drift, diffusion, x, i) for i in minima]
    xs = [_refine_extremum(drift, diffusion, x, i) for i in saddles]
    bounds = [float(x[0]), *xs, float(x[-1])]
    wells = []
    for j, i in enumerate(minima):
        sides = [u[saddles[k]] - u[i] for k in (j - 1, j) if 0 <= k < len(saddles)]
        wells.append(Well(minimum=xm[j], basin=(bounds[j], bounds[j + 1]),
                          depth=float(min(sides)) if sides else math.inf))
    return wells


def _tail_start(drift: Field, diffusion: Field, x0: float, target: float) -> float:
    """Point ``L < x0`` left of which the speed density is negligible relative to its values
    on ``[L, x0]`` (ratio below ``exp(-_TAIL_LOG)``)."""
    width = max(1.0, target - x0)
    while width <= _MAX_WIDTH:
        x = np.linspace(x0 - width, x0, 4001)
        g = _log_density(drift, diffusion, x)
        thresh = g.max() - _TAIL_LOG
        if g[0] < thresh:
            # Leftmost point still above the threshold, one coarse step of margin.
            first = int(np.argmax(g >= thresh))
            return float(x[max(first - 1, 0)])
        width *= 2.0
    raise ValueError(f"stationary density does not become negligible within {_MAX_WIDTH:g} of "
                     f"x0={x0!r}; pass an explicit reflecting boundary `lower`")


def _mfpt_up(drift: Field, diffusion: Field, x0: float, target: float, lower: float | None,
             n: int) -> float:
    """MFPT from ``x0`` up to ``target > x0``, reflecting at ``lower <= x0``:

        T = int_{x0}^{target} s(y) int_{lower}^{y} 2 / (A(z) s(z)) dz dy,   s = exp(Phi).
    """
    big_l = _tail_start(drift, diffusion, x0, target) if lower is None else float(lower)
    total = target - big_l
    # Two uniform pieces so that x0 is a node (no interpolation error).
    n1 = 0 if big_l == x0 else max(5, int(round(n * (x0 - big_l) / total)) | 1)
    n2 = max(5, (n - n1) | 1)
    x2 = np.linspace(x0, target, n2)
    phi2 = scale_exponent(drift, diffusion, x2)  # Phi(x0) = 0
    a2 = _evaluate(diffusion, x2, "diffusion", positive=True)
    if n1:
        x1 = np.linspace(big_l, x0, n1)
        phi1 = scale_exponent(drift, diffusion, x1)
        phi1 -= phi1[-1]  # same reference point x0 as phi2
        a1 = _evaluate(diffusion, x1, "diffusion", positive=True)
        cmin = min(phi1.min(), phi2.min())
        inner0 = integrate.simpson(2.0 * np.exp(cmin - phi1) / a1, x=x1)
    else:
        cmin, inner0 = phi2.min(), 0.0
    # Each factor is shifted by its own extreme exponent, so both stay <= O(length).
    inner = inner0 + _cumsimpson(2.0 * np.exp(cmin - phi2) / a2, x2)
    cmax = phi2.max()
    outer = integrate.simpson(np.exp(phi2 - cmax) * inner, x=x2)
    log_t = math.log(outer) + (cmax - cmin) if outer > 0 else -math.inf
    if log_t > 709.0:
        raise ValueError(f"mean first passage time exp({log_t:.1f}) overflows float64")
    return math.exp(log_t)


def mfpt(drift: Field, diffusion: Field, x0: float, target: float, *, lower: float | None = None,
         n: int = 20001) -> float:
    """Exact mean first passage time from ``x0`` to ``target``.

    The diffusion is reflected at ``lower`` on the far side of ``x0`` from ``target``; with
    ``lower=None`` the far side is unbounded (the integration range is extended until the
    stationary density is negligible, below ``exp(-50)`` of its values near ``x0``).
    Both directions (``target > x0`` and ``target < x0``) are handled.

    For ``target > x0`` and reflection at ``L``:

        T(x0) = int_{x0}^{target} s(y) int_{L}^{y} 2 / (A(z) s(z)) dz dy,   s = exp(Phi).

    Parameters
    ----------
    drift, diffusion : callable
    x0, target : float
        Start and absorbing point (units of x).
    lower : float or None
        Reflecting point beyond ``x0`` (``<= x0`` if ``target > x0``, ``>= x0`` otherwise).
    n : int
        Total number of grid points.

    Returns
    -------
    float
        Mean first passage time in the time units of ``b`` and ``A``.
    """
    x0, target = finite("x0", x0), finite("target", target)
    n = whole_number("n", n, 11)
    if lower is not None:
        lower = float(lower)
        if not math.isfinite(lower):
            raise ValueError(f"lower must be finite or None; got {lower!r}")
        if (target > x0 and lower > x0) or (target < x0 and lower < x0):
            raise ValueError(f"x0={x0!r} outside the interval between lower={lower!r} and target={target!r}")
    if target == x0:
        return 0.0
    if target > x0:
        return _mfpt_up(drift, diffusion, x0, target, lower, n)

    # Downward passage: mirror x -> -x (drift changes sign, diffusion does not).
    def drift_m(x: np.ndarray) -> np.ndarray:
        return -np.asarray(drift(-x), dtype=np.float64)

    def diffusion_m(x: np.ndarray) -> np.ndarray:
        return diffusion(-x)

    return _mfpt_up(drift_m, diffusion_m, -x0, -target, None if lower is None else -lower, n)


def committor(drift: Field, diffusion: Field, a: float, b: float, x: np.ndarray | float,
              n: int = 20001) -> np.ndarray:
    """Probability of hitting ``b`` before ``a``: ``q(x) = int_a^x s / int_a^b s``.

    Parameters
    ----------
    drift, diffusion : callable
    a, b : float
        Absorbing points, ``a < b``.
    x : float or ndarray, any shape
        Starting points in ``[a, b]``.
    n : int
        Grid points on ``[a, b]``; values between nodes use cubic Hermite interpolation of the
        cumulative integral with its exact derivative ``s`` (error O(h^4)).

    Returns
    -------
    ndarray, shape of ``x``
        Dimensionless probabilities in ``[0, 1]``.
    """
    a, b = finite_interval(a, b, ("a", "b"))
    xq = np.asarray(x, dtype=np.float64)
    bad = ~((xq >= a) & (xq <= b))
    if np.any(bad):
        raise ValueError(f"x must lie in [a, b] = [{a!r}, {b!r}]; got {float(xq[bad].flat[0])!r}")
    grid = np.linspace(a, b, whole_number("n", n, 5))
    phi = scale_exponent(drift, diffusion, grid)
    s = np.exp(phi - phi.max())
    cum = _cumsimpson(s, grid)
    spline = interpolate.CubicHermiteSpline(grid, cum, s)
    return np.clip(spline(xq) / cum[-1], 0.0, 1.0)


def generator_eigenvalues(drift: Field, diffusion: Field, lo: float, hi: float, k: int = 4,
                          n: int = 2000) -> np.ndarray:
    """Leading eigenvalues of the generator with reflecting boundaries at ``lo`` and ``hi``.

    Finite volumes: ``n`` cells of width ``h``, generator in divergence form
    ``L f = (1/rho) (rho A/2 f')'`` and ``rho A = exp(-Phi)`` evaluated exactly at the cell
    faces.  The rate from cell ``i`` to ``i+1`` is ``(rho A/2)_{i+1/2} / (rho_i h^2)``, which
    satisfies detailed balance with ``pi_i ∝ rho_i`` exactly; symmetrising with
    ``rho^{1/2}`` gives a symmetric tridiagonal matrix whose entries involve only local
    differences of ``Phi`` (no overflow).  The scheme is second order: errors O(h^2).

    Parameters
    ----------
    drift, diffusion : callable
    lo, hi : float
        Reflecting boundaries.
    k : int
        Number of eigenvalues returned.
    n : int
        Number of cells.

    Returns
    -------
    ndarray, shape (k,)
        Eigenvalues in 1/time, descending: about 0 first, then negative.  Implied timescales
        are ``-1 / eigenvalues[1:]``.  Eigenvalues below about ``1e-16 * max(A) / h^2`` in
        magnitude are not resolved (round-off of the symmetric solver).
    """
    lo, hi = finite_interval(lo, hi)
    n = whole_number("n", n, 3)
    if int(k) != k or not 1 <= k <= n:
        raise ValueError(f"k must be an integer in [1, n={n}]; got k={k!r}")
    h = (hi - lo) / n
    pts = np.linspace(lo, hi, 2 * n + 1)  # faces at even, centres at odd indices
    phi = scale_exponent(drift, diffusion, pts)
    a = _evaluate(diffusion, pts, "diffusion", positive=True)
    pc, ac = phi[1::2], a[1::2]
    pf = phi[2:-1:2]  # interior faces, shape (n-1,)
    # w_{i+1/2} / sqrt(rho_i rho_{i+1}) and w_{i+1/2} / rho_i, with w = rho A / 2 = exp(-Phi)/2.
    off = 0.5 * np.exp(0.5 * (pc[:-1] + pc[1:]) - pf) * np.sqrt(ac[:-1] * ac[1:]) / h**2
    up = 0.5 * np.exp(pc[:-1] - pf) * ac[:-1] / h**2
    down = 0.5 * np.exp(pc[1:] - pf) * ac[1:] / h**2
    diag = np.zeros(n)
    diag[:-1] -= up
    diag[1:] -= down
    if not (np.all(np.isfinite(off)) and np.all(np.isfinite(diag))):
        raise ValueError(f"rates overflow on the grid (n={n}): increase n")
    w = eigh_tridiagonal(diag, off, eigvals_only=True, select="i", select_range=(n - k, n - 1))
    return np.sort(w)[::-1]
