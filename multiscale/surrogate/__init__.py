"""Learning the effective (averaged or homogenized) SDE of the slow variables with neural networks."""
from ._io import SurrogateFormatError, load_surrogate, save_surrogate
from ._model import EffectiveSDE
from ._options import DiffusionForm, SurrogateOptions, TrajectoryMethod
from ._train import EffectiveSDEEstimator, LagWarning, choose_lag, lag_ladder

__all__ = ["DiffusionForm", "EffectiveSDE", "EffectiveSDEEstimator", "LagWarning", "SurrogateFormatError",
           "SurrogateOptions", "TrajectoryMethod", "choose_lag", "lag_ladder", "load_surrogate",
           "save_surrogate"]
