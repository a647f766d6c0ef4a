"""Model catalogue and user-defined models."""
from .._errors import ModelCompileError, ModelLanguageError
from ._catalog import CATALOG, get_model, list_models
from ._evaluate import ModelFunctions
from ._model import Model, load_model_file
from ._types import ModelInfo, Param, Scaling

__all__ = ["CATALOG", "Model", "ModelCompileError", "ModelFunctions", "ModelInfo", "ModelLanguageError", "Param",
           "Scaling", "get_model", "list_models", "load_model_file"]
