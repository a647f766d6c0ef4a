"""Model catalogue."""
from ._catalog import CATALOG, ModelInfo, Param, Scaling, get_model, list_models

__all__ = ["CATALOG", "ModelInfo", "Param", "Scaling", "get_model", "list_models"]
