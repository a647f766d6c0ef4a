"""Invariant measures of a slow observable from long simulations.

The histogram is accumulated in the simulation kernels (``Observables`` with a ``Histogram``):
no trajectory is stored. Error bars come from *independent batches*: the paths are split into
groups simulated with disjoint path indices (``path_offset``), so batch histograms are
independent by construction, unlike time blocks of one run, and the pooled result is the same
as one big run.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .._checks import finite_interval, integer, positive_finite
from ..models import Model, ModelInfo, get_model
from ..simulate._options import Histogram, Observables
from ..simulate._simulate import simulate
from ._distances import DistanceResult, bin_probabilities, density_distance


@dataclass(frozen=True)
class DensityEstimate:
    """A stationary density estimated by a histogram over independent batches.

    Attributes
    ----------
    edges : ndarray (bins + 1,)
        Bin edges (state units).
    counts : ndarray (n_batches, bins) int
        Path-state counts per batch inside the range.
    outside : ndarray (n_batches,) int
        Counts below or above the range (reported; the density is conditional on the range).
    source : str
        What was simulated.
    variable : str
    """

    edges: np.ndarray
    counts: np.ndarray
    outside: np.ndarray
    source: str
    variable: str
    samples: np.ndarray | None = None
    sample_dt: float | None = None

    @property
    def centers(self) -> np.ndarray:
        return 0.5 * (self.edges[1:] + self.edges[:-1])

    @property
    def density(self) -> np.ndarray:
        """Pooled density on the range, (bins,), per state unit."""
        c = self.counts.sum(0)
        return c / (c.sum() * np.diff(self.edges))

    @property
    def stderr(self) -> np.ndarray:
        """Standard error of ``density`` from the spread of the batch densities, (bins,)."""
        tot = self.counts.sum(1, keepdims=True)
        d = self.counts / (tot * np.diff(self.edges))
        return d.std(0, ddof=1) / math.sqrt(self.counts.shape[0])

    @property
    def fraction_outside(self) -> float:
        return float(self.outside.sum() / (self.outside.sum() + self.counts.sum()))

    def moment(self, f: Callable[[np.ndarray], np.ndarray]) -> tuple[float, float]:
        """E[f(X)] over the range from the bin centres, with its batch standard error."""
        tot = self.counts.sum(1)
        per = (self.counts * f(self.centers)[None, :]).sum(1) / tot
        pooled = float((self.counts * f(self.centers)[None, :]).sum() / tot.sum())
        return pooled, float(per.std(ddof=1) / math.sqrt(per.size))

    def distance(self, other: "DensityEstimate | Callable[[np.ndarray], np.ndarray]", kind: str = "tv",
                 seed: int = 0) -> DistanceResult:
        """Distance to another estimate on the same bins, or to a density function (callable).

        The interval and the noise floor come from bootstrapping the batches; see
        :func:`multiscale.validate.density_distance`.
        """
        if isinstance(other, DensityEstimate):
            if other.edges.shape != self.edges.shape or not np.allclose(other.edges, self.edges):
                raise ValueError("the two density estimates have different bins")
            return density_distance(self.counts, counts_ref=other.counts, edges=self.edges, kind=kind, seed=seed)
        if not callable(other):
            raise ValueError(f"other={other!r} must be a DensityEstimate or a density function")
        return density_distance(self.counts, bin_probabilities(other, self.edges), edges=self.edges, kind=kind,
                                seed=seed)


def stationary_histogram(system: Any, *, lo: float, hi: float, bins: int, t_burn: float, t_end: float, dt: float,
                         n_paths: int, n_batches: int = 10, variable: str | None = None, x0: Any = None,
                         y0: Any = None, params: Mapping[str, float] | None = None, eps: float | None = None,
                         seed: int = 0, member: int | None = None, threads: int | None = None,
                         sample_every: float | None = None) -> DensityEstimate:
    """Histogram of one state component over ``(t_burn, t_end]``, in independent batches.

    Parameters
    ----------
    system : str, ModelInfo or EffectiveSDE
        A catalogue model (compiled kernels) or a learned surrogate (``member`` None: ensemble
        mean; ``"sample"``: each path follows one member).
    lo, hi, bins :
        Histogram range and number of bins of ``variable`` (default: the first slow variable).
    t_burn, t_end, dt : float
        Burn-in time, final time and step (model time units).
    n_paths, n_batches : int
        Total paths, split into ``n_batches`` groups (at least 2) of disjoint path indices.
    x0, y0 : float or array
        Initial states; an array of shape (n_paths, m) gives one per path (e.g. draws from a
        guess of the invariant law, which shortens the burn-in needed).
    sample_every : float, optional
        Also keep ``variable`` every this many time units after the burn-in, as ``samples``
        (n_paths, n_times) (for Markov state models); a multiple of ``dt``.
    """
    n_paths = integer("n_paths", n_paths, 2)
    n_batches = integer("n_batches", n_batches, 2)
    bins = integer("bins", bins, 2)
    if n_paths % n_batches:
        raise ValueError(f"n_paths={n_paths} must be a multiple of n_batches={n_batches}")
    lo, hi = finite_interval(lo, hi)
    positive_finite("t_end", t_end)
    if not 0 <= t_burn < t_end:
        raise ValueError(f"t_burn={t_burn!r} must be in [0, t_end={t_end})")
    per = n_paths // n_batches
    surrogate = not isinstance(system, (str, ModelInfo, Model))
    if surrogate:
        names = list(system.names)
    else:
        info = get_model(system)
        s, f = info.state_names(info.resolve_params(params))
        names = s + f
    var = names[0] if variable is None else variable
    if var not in names:
        raise ValueError(f"variable={var!r} is not a state variable; choose from {names}")
    obs = Observables((var,), start=float(t_burn), histogram=Histogram(bins=bins, lo=float(lo), hi=float(hi)))

    def rows(v: Any, i: int) -> Any:
        a = np.asarray(v) if v is not None else None
        return v if a is None or a.ndim < 2 else a[i * per:(i + 1) * per]

    save_times: Any = []
    if sample_every is not None:
        positive_finite("sample_every", sample_every)
        k = int(round(sample_every / dt))
        if k < 1 or abs(k * dt - sample_every) > 1e-9 * sample_every:
            raise ValueError(f"sample_every={sample_every!r} must be a multiple of dt={dt!r}")
        n_steps = int(round(t_end / dt))
        first = int(math.ceil(t_burn / dt / k)) * k
        save_times = np.arange(first, n_steps + 1, k) * dt
    counts, outside, samples = [], [], []
    for i in range(n_batches):
        kw = dict(t_end=t_end, dt=dt, x0=rows(x0, i), n_paths=per, seed=seed, save_times=save_times, observables=obs,
                  path_offset=i * per, threads=threads)
        if surrogate:
            if y0 is not None or params is not None or eps is not None:
                raise ValueError("y0, params and eps apply to catalogue models only, not to a surrogate")
            ds = system.simulate(member=member, **kw)
        else:
            ds = simulate(system, params=params, eps=eps, y0=rows(y0, i), **kw)
        counts.append(ds.hist_count.values.sum(axis=(0, 1)))
        outside.append(int(ds.hist_underflow.values.sum() + ds.hist_overflow.values.sum()))
        if sample_every is not None:
            samples.append(ds.trajectory.sel(state=var).values)
    label = system if isinstance(system, str) else getattr(system, "name", "surrogate")
    return DensityEstimate(edges=np.linspace(float(lo), float(hi), bins + 1), counts=np.asarray(counts),
                           outside=np.asarray(outside), source=str(label) if isinstance(label, str) else "surrogate",
                           variable=var, samples=np.concatenate(samples) if samples else None,
                           sample_dt=None if sample_every is None else float(sample_every))
