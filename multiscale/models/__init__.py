"""Model catalogue and user-defined models."""
from ._catalog import CATALOG, ModelInfo, Param, Scaling, get_model, list_models
from ._language import Model, ModelFunctions, ModelLanguageError, load_model_file

__all__ = ["CATALOG", "Model", "ModelFunctions", "ModelInfo", "ModelLanguageError", "Param", "Scaling",
           "get_model", "list_models", "load_model_file"]
