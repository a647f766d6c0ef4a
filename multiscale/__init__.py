"""multiscale: an engine for multiscale stochastic modeling.

Simulate fast/slow SDE ensembles in compiled CPU (OpenMP, SIMD) and CUDA kernels that share
one header-only source of the numerics, reproducibly: every random number is a pure function
of (seed, path, step), so results do not depend on threads, chunking or devices.

>>> import multiscale as ms
>>> ds = ms.simulate("fast_ou_linear", eps=0.01, t_end=1.0, dt=1e-3, n_paths=1000, seed=1)
"""
from ._device import build_info
from ._errors import (CampaignError, CampaignSpecError, DeviceUnavailableError, ExportFormatError, LagWarning,
                      ModelCompileError, ModelLanguageError, MultiscaleError, MultiscaleWarning, SimulationError,
                      StateRolesWarning, SurrogateFormatError)
from .averaging import AveragedSDE, AveragingEstimator, AveragingOptions
from .io import open_dataset, save_dataset
from .models import Model, ModelInfo, Param, Scaling, get_model, list_models, load_model_file
from .simulate import FastStep, Histogram, Observables, Precision, resimulate, simulate

__version__ = build_info()["version"]

# The learning layer needs torch, whose import takes seconds: load it on first use.
_SURROGATE = ("DiffusionForm", "EffectiveSDE", "EffectiveSDEEstimator", "LocalClosureEstimator", "LocalEffectiveSDE",
              "RingClosure", "SurrogateOptions", "TrajectoryMethod", "load_surrogate", "save_surrogate")


def __getattr__(name: str):
    if name in _SURROGATE:
        from . import surrogate

        return getattr(surrogate, name)
    raise AttributeError(f"module 'multiscale' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SURROGATE))

__all__ = [
    *_SURROGATE,
    "AveragedSDE",
    "AveragingEstimator",
    "AveragingOptions",
    "CampaignError",
    "CampaignSpecError",
    "DeviceUnavailableError",
    "ExportFormatError",
    "FastStep",
    "Histogram",
    "LagWarning",
    "Model",
    "ModelCompileError",
    "ModelInfo",
    "ModelLanguageError",
    "MultiscaleError",
    "MultiscaleWarning",
    "Observables",
    "Param",
    "Precision",
    "Scaling",
    "SimulationError",
    "StateRolesWarning",
    "SurrogateFormatError",
    "__version__",
    "build_info",
    "get_model",
    "list_models",
    "load_model_file",
    "open_dataset",
    "resimulate",
    "save_dataset",
    "simulate",
]
