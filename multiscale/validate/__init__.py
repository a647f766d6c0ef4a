"""Validation: invariant measures, metastability and rare events, for the full system, a learned
surrogate and the exact limit, with error bars; and the validation report.

Simulation-based estimators run in the compiled kernels for catalogue models (first passages
with a Brownian-bridge crossing test, histograms accumulated in the kernel), for catalogue models
and learned surrogates alike, with counter-based noise; step_size_check shows the discretisation
error of a surrogate's step. One-dimensional answers are exact
(quadrature of the stationary Fokker-Planck equation, MFPT integral formula, committor,
spectral gap of the generator).
"""
from ._ams import AMSOptions, AMSResult, ams
from ._distances import DistanceResult, bin_probabilities, density_distance
from ._exact1d import (Well, committor, effective_potential, find_wells, generator_eigenvalues, mfpt,
                       stationary_density)
from ._invariant import DensityEstimate, stationary_histogram
from ._limits import ExactLimit, exact_limit
from ._msm import MSMResult, msm_implied_timescales
from ._passage import MFPTResult, PassageResult, first_passage, mean_first_passage_time
from ._report import ValidationReport, ValidationSettings, validate
from ._ring import (RingComparison, RingStatistics, TransitionStatistics, compare_ring, linear_gaussian_statistics,
                    reaction_coordinate_mfpt, ring_statistics, transition_statistics)
from ._ring_report import RingValidationSettings, independent_starts, validate_ring
from ._stepsize import StepSizeCheck, step_size_check

__all__ = [
    "AMSOptions", "AMSResult", "DensityEstimate", "DistanceResult", "ExactLimit", "MFPTResult", "MSMResult",
    "PassageResult", "RingComparison", "RingStatistics", "RingValidationSettings", "StepSizeCheck",
    "TransitionStatistics", "ValidationReport", "ValidationSettings", "Well", "ams", "bin_probabilities", "committor",
    "independent_starts",
    "compare_ring", "density_distance", "effective_potential", "exact_limit", "find_wells", "first_passage",
    "generator_eigenvalues", "linear_gaussian_statistics", "mean_first_passage_time", "mfpt",
    "msm_implied_timescales", "reaction_coordinate_mfpt", "ring_statistics", "stationary_density",
    "stationary_histogram", "step_size_check", "transition_statistics", "validate", "validate_ring",
]
