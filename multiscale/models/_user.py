"""A user :class:`~multiscale.Model` as a compiled catalogue entry (:class:`ModelInfo`)."""
from __future__ import annotations

import os

import numpy as np

from ._model import Model
from ._types import ModelInfo, Param

_INFOS: dict[str, ModelInfo] = {}


def _equations(model: Model) -> str:
    """The SDE as text, with the scaling's eps factors (``multiscale models --model-file``)."""
    sc = model.scaling.value
    fast_drift, fast_noise = {"averaging": ("/eps", "/sqrt(eps)"), "homogenization": ("/eps^2", "/eps")}.get(
        sc, ("", ""))
    out = []
    for q in model.parsed().slow_drift:
        v = q.variable.name
        f0 = next((e.text for e in model.parsed().slow_drift0 if e.variable.name == v), None)
        a = next((e.text for e in model.parsed().slow_noise if e.variable.name == v), "0")
        drift = f"({q.text})" + (f" + ({f0})/eps" if f0 and f0 != "0" else "")
        out.append(f"d{v} = [{drift}] dt" + (f" + ({a}) dW" if a != "0" else ""))
    for q in model.parsed().fast_drift:
        v = q.variable.name
        b = next((e.text for e in model.parsed().fast_noise if e.variable.name == v), "0")
        out.append(f"d{v} = ({q.text}){fast_drift} dt + ({b}){fast_noise} dW")
    return ";  ".join(out)


def user_model_info(model: Model) -> ModelInfo:
    """Compile (or load from the cache) and describe a user model."""
    # The build settings choose the module (CPU only or with CUDA, which cache): part of the key.
    key = f"{model.source_hash()}|{os.environ.get('MULTISCALE_JIT_CUDA', 'auto')}|{os.environ.get('MULTISCALE_CACHE')}"
    if key in _INFOS:
        return _INFOS[key]
    from ._codegen import generate_header, ou_form
    from ._jit import build_module

    core = build_module(generate_header(model), label=f"model {model.name!r}")
    eqs = _equations(model)
    info = ModelInfo(
        name=model.name, id=0, description=model.description or "user model", equations=eqs,
        scaling=model.scaling, params=tuple(Param(n, float(v), "") for n, v in model.params.items()),
        uses_eps=model.uses_eps, default_eps=model.default_eps, reference="user model",
        exact_ou=ou_form(model.parsed()) is not None, _dims=model.dims, _names=model.state_names,
        _initial=lambda p: tuple(np.zeros(d) for d in model.dims(p)), core=core, source=model)
    _INFOS[key] = info
    return info
