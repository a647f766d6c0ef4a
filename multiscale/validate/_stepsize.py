"""Step-size check of a surrogate simulation: the same run at ``dt`` and ``dt/2`` on one Brownian path.

The learned effective SDE is smooth, so long steps are tempting; this shows what a chosen ``dt``
costs. The run at ``dt`` draws, at each step, the sum of the two half-step increments of the
run at ``dt/2`` (``EffectiveSDE.simulate(noise_substeps=2)``), so both runs follow the same
Brownian path and their difference is the discretisation error, not sampling noise. For the weak
order 1 of Euler-Maruyama, a statistic's error at ``dt`` is about twice its change from ``dt`` to
``dt/2`` (Richardson); standard errors come from the paired differences of the paths.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .._checks import integer, positive_finite


@dataclass(frozen=True)
class StepSizeCheck:
    """Statistics of ``X(t_end)`` at ``dt`` and ``dt/2`` from the same noise, per slow variable.

    Attributes
    ----------
    dt, t_end : float
    names : tuple of str
    mean, mean_half : ndarray (m,)
        Mean of ``X(t_end)`` at ``dt`` and at ``dt/2``.
    mean_error, mean_error_stderr : ndarray (m,)
        Estimated error of the mean at ``dt``: ``2 (mean - mean_half)``, and its standard error.
    var, var_half, var_error, var_error_stderr : ndarray (m,)
        The same for the variance.
    rms_path_difference : ndarray (m,)
        Root mean square of ``X_dt(t_end) - X_dt/2(t_end)`` (the strong error's scale).
    relative_error : float
        Largest ``|mean_error| / sd`` and ``|var_error| / var`` over the variables.
    n_paths : int
    """

    dt: float
    t_end: float
    names: tuple[str, ...]
    mean: np.ndarray
    mean_half: np.ndarray
    mean_error: np.ndarray
    mean_error_stderr: np.ndarray
    var: np.ndarray
    var_half: np.ndarray
    var_error: np.ndarray
    var_error_stderr: np.ndarray
    rms_path_difference: np.ndarray
    relative_error: float
    n_paths: int

    def summary(self) -> str:
        """The check as text: errors of the mean and variance per variable, ± 2 standard errors."""
        rows = [f"step-size check, dt = {self.dt:g} against dt/2 on the same Brownian path "
                f"({self.n_paths} paths, X at t = {self.t_end:g}):"]
        for i, v in enumerate(self.names):
            rows.append(f"  {v}: mean error {self.mean_error[i]:+.3g} +- {self.mean_error_stderr[i]:.2g}, "
                        f"variance error {self.var_error[i]:+.3g} +- {self.var_error_stderr[i]:.2g} "
                        f"(variance {self.var[i]:.3g})")
        rows.append(f"  largest relative error {self.relative_error:.2%}")
        return "\n".join(rows)


def step_size_check(sde: Any, *, dt: float, t_end: float, n_paths: int = 4000, x0: Any = None, seed: int = 0,
                    member: int | str | None = "sample", threads: int | None = None) -> StepSizeCheck:
    """Discretisation error of simulating a surrogate at ``dt``, from a paired run at ``dt/2``.

    Parameters
    ----------
    sde : EffectiveSDE
    dt : float
        The step to check (model time units).
    t_end : float
        Time at which ``X`` is compared; a multiple of ``dt``. Long enough to reach the invariant
        measure checks the stationary statistics.
    n_paths, x0, seed, member, threads
        As in :meth:`EffectiveSDE.simulate`.

    Returns
    -------
    StepSizeCheck
    """
    dt = positive_finite("dt", dt)
    t_end = positive_finite("t_end", t_end)
    n_paths = integer("n_paths", n_paths, 2)
    kw = dict(t_end=t_end, n_paths=n_paths, x0=x0, seed=seed, member=member, threads=threads)
    a = sde.simulate(dt=dt, noise_substeps=2, **kw)
    b = sde.simulate(dt=dt / 2, **kw)
    ok = (a.status.values == 0) & (b.status.values == 0)
    if ok.sum() < 2:
        raise ValueError(f"dt={dt!r}: fewer than two paths finished at both steps (the step is too long)")
    xa, xb = a.final_state.values[ok], b.final_state.values[ok]
    n = xa.shape[0]
    ma, mb = xa.mean(0), xb.mean(0)
    d = xa - xb
    se_mean = d.std(0, ddof=1) / np.sqrt(n)
    # variance difference: paired influence functions (x - mean)^2
    ia, ib = (xa - ma) ** 2, (xb - mb) ** 2
    va, vb = ia.sum(0) / (n - 1), ib.sum(0) / (n - 1)
    se_var = (ia - ib).std(0, ddof=1) / np.sqrt(n)
    mean_err, var_err = 2 * (ma - mb), 2 * (va - vb)
    rel = float(max(np.max(np.abs(mean_err) / np.sqrt(vb)), np.max(np.abs(var_err) / vb)))
    return StepSizeCheck(dt=dt, t_end=t_end, names=tuple(sde.names), mean=ma, mean_half=mb, mean_error=mean_err,
                         mean_error_stderr=2 * se_mean, var=va, var_half=vb, var_error=var_err,
                         var_error_stderr=2 * se_var, rms_path_difference=np.sqrt((d**2).mean(0)),
                         relative_error=rel, n_paths=int(n))
