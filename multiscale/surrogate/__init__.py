"""Learning the effective (averaged or homogenized) SDE of the slow variables with neural networks."""
from .._errors import LagWarning, StateRolesWarning, SurrogateFormatError
from ._baselines import PolynomialClosure
from ._io import load_surrogate, save_surrogate
from ._local import LocalClosureEstimator, LocalEffectiveSDE, RingClosure
from ._model import EffectiveSDE
from ._options import DiffusionForm, SurrogateOptions, TrajectoryMethod
from ._train import EffectiveSDEEstimator, choose_lag, lag_ladder, member_groups

__all__ = ["DiffusionForm", "EffectiveSDE", "EffectiveSDEEstimator", "LagWarning", "LocalClosureEstimator",
           "LocalEffectiveSDE", "PolynomialClosure", "RingClosure", "StateRolesWarning", "SurrogateFormatError",
           "SurrogateOptions", "TrajectoryMethod", "choose_lag", "lag_ladder", "load_surrogate", "member_groups",
           "save_surrogate"]
