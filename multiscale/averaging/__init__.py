"""Averaged drift and effective diffusion (heterogeneous multiscale method)."""
from ._estimator import AveragingEstimator
from ._macro import AveragedSDE
from ._options import AveragingOptions

__all__ = ["AveragedSDE", "AveragingEstimator", "AveragingOptions"]
