"""The HMM macro-solver: simulate the averaged SDE dX = F(X) dt + A(X)^(1/2) dW from the
estimated F and A, interpolated between the slow points, in the compiled kernels."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import xarray as xr

from ..models import ModelInfo, Param, Scaling
from ..simulate import simulate

MAX_KNOTS = 128


class AveragedSDE:
    """The averaged (or homogenized) SDE estimated by :class:`AveragingEstimator`, for one slow
    variable: drift and noise ``sqrt(A)`` are piecewise linear between the estimated points
    (drift extrapolated linearly, noise held constant outside them).

    Parameters
    ----------
    result : xarray.Dataset
        ``AveragingEstimator.result_`` with one slow variable and 2..128 distinct points.
    """

    def __init__(self, result: xr.Dataset) -> None:
        if result.sizes["slow"] != 1:
            raise ValueError(f"the macro-solver supports one slow variable; this result has "
                             f"{result.sizes['slow']}")
        x = result["x"].values[:, 0]
        order = np.argsort(x)
        x = x[order]
        if x.size < 2 or x.size > MAX_KNOTS or np.any(np.diff(x) <= 0):
            raise ValueError(f"the macro-solver needs 2..{MAX_KNOTS} distinct slow points, got {x.size}")
        self.x = x
        self.F = result["F"].values[order, 0]
        self.A = result["A"].values[order, 0, 0]
        if not (np.all(np.isfinite(self.F)) and np.all(np.isfinite(self.A))):
            raise ValueError("the estimated F or A contains non-finite values (failed points)")
        self.source_model = result.attrs.get("model", "")
        self.source_params = result.attrs.get("params_json", "{}")

    def drift(self, x: Any) -> np.ndarray:
        """Interpolated averaged drift at ``x`` (same rule as the compiled solver)."""
        x = np.asarray(x, float)
        i = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, self.x.size - 2)
        t = (x - self.x[i]) / (self.x[i + 1] - self.x[i])
        return self.F[i] + t * (self.F[i + 1] - self.F[i])

    def diffusion(self, x: Any) -> np.ndarray:
        """Interpolated effective diffusion ``A(x)`` (square of the interpolated noise)."""
        s = np.sqrt(np.maximum(self.A, 0.0))
        x = np.asarray(x, float)
        i = np.clip(np.searchsorted(self.x, x, side="right") - 1, 0, self.x.size - 2)
        t = np.clip((x - self.x[i]) / (self.x[i + 1] - self.x[i]), 0.0, 1.0)
        return (s[i] + t * (s[i + 1] - s[i])) ** 2

    def model_info(self) -> ModelInfo:
        """A catalogue-style description of the tabulated SDE (for :func:`multiscale.simulate`)."""
        n = self.x.size
        vals = np.zeros(1 + 3 * MAX_KNOTS)
        vals[0] = n
        vals[1:1 + n] = self.x
        vals[1 + MAX_KNOTS:1 + MAX_KNOTS + n] = self.F
        vals[1 + 2 * MAX_KNOTS:1 + 2 * MAX_KNOTS + n] = np.sqrt(np.maximum(self.A, 0.0))
        names = ["n"] + [f"x_{i}" for i in range(MAX_KNOTS)] + [f"F_{i}" for i in range(MAX_KNOTS)] \
            + [f"S_{i}" for i in range(MAX_KNOTS)]
        params = tuple(Param(k, float(v), "knot table") for k, v in zip(names, vals))
        return ModelInfo(
            "averaged_sde", 9, f"averaged SDE estimated from {self.source_model} {self.source_params}",
            "dX = F(X) dt + sqrt(A(X)) dW, F and sqrt(A) piecewise linear on the estimated points",
            Scaling.NONE, params, False, None, "estimated (multiscale.averaging)", False,
            lambda p: (1, 0), lambda p: (["x"], []), lambda p: (np.array([0.0]), np.array([])))

    def simulate(self, **kwargs: Any) -> xr.Dataset:
        """Simulate the averaged SDE; takes the keyword arguments of :func:`multiscale.simulate`
        (``t_end``, ``dt``, ``x0``, ``n_paths``, ``seed``, ``observables``, ...), except
        ``params``, ``eps`` and ``y0``."""
        for bad in ("params", "eps", "y0"):
            if bad in kwargs:
                raise ValueError(f"AveragedSDE.simulate does not take {bad!r}")
        ds = simulate(self.model_info(), **kwargs)
        ds.attrs["macro_solver_knots_json"] = json.dumps(
            {"x": self.x.tolist(), "F": self.F.tolist(), "A": self.A.tolist()})
        return ds
