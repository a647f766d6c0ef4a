"""A user :class:`~multiscale.Model` as a compiled catalogue entry (:class:`ModelInfo`)."""
from __future__ import annotations

import numpy as np

from ._catalog import ModelInfo, Param
from ._language import Model

_INFOS: dict[str, ModelInfo] = {}


def user_model_info(model: Model) -> ModelInfo:
    """Compile (or load from the cache) and describe a user model."""
    key = model.source_hash()
    if key in _INFOS:
        return _INFOS[key]
    from ._codegen import generate_header, ou_form
    from ._jit import build_module

    core = build_module(generate_header(model), label=f"model {model.name!r}")
    eqs = "; ".join(f"d{k} = ({v}) dt" for k, v in model.slow.items())
    info = ModelInfo(
        name=model.name, id=0, description=model.description or "user model", equations=eqs,
        scaling=model.scaling, params=tuple(Param(n, float(v), "") for n, v in model.params.items()),
        uses_eps=model.uses_eps, default_eps=model.default_eps, reference="user model",
        exact_ou=ou_form(model.parsed()) is not None, _dims=model.dims, _names=model.state_names,
        _initial=lambda p: tuple(np.zeros(d) for d in model.dims(p)), core=core)
    _INFOS[key] = info
    return info
