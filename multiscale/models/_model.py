"""User-defined models: :class:`Model`, a fast/slow SDE written in the safe model language, and
its TOML file form.

A :class:`Model` declares the slow and fast variables of an SDE with one expression string per
drift and noise term::

    Model("l96", slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"},
          params={"K": 8, "F": 20.0}, sizes={"X": "K"}, scaling="none")

Expressions use the state names, parameter names, numeric literals, ``+ - * / **`` (``^`` is a
synonym of ``**``), parentheses, the functions in :data:`~._ir.FUNCTIONS`, the constants ``pi``
and ``e``, the scale separation ``eps`` and, for vector variables, periodic indices (``X[k-1]`` is
taken modulo the length of ``X``) and sums ``sum(body, j, lo, hi)`` over ``j = lo .. hi-1``.

The text is parsed, never executed (:mod:`._parser`), into the IR of :mod:`._ir`, which the back
ends walk: NumPy and PyTorch evaluation (:mod:`._evaluate`) and C++ code generation
(:mod:`._codegen`).
"""
from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from .._checks import positive_finite
from .._errors import ModelLanguageError
from .._toml import read_toml
from ._evaluate import ModelFunctions
from ._ir import LANGUAGE_VERSION, RESERVED, Eps, Equation, Expr, ParsedModel, Variable, eval_index, walk_model
from ._parser import MAX_NAME_LENGTH, Parser, Scope, is_name
from ._types import Scaling

_DECL_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\[\s*([A-Za-z][A-Za-z0-9_]*)\s*\])?\s*\Z")
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_TABLES = ("slow", "fast", "slow_noise", "fast_noise", "slow_drift0", "params", "sizes")
_KEYS = ("name", "description", "scaling", "default_eps", "potential", "fast_invariant_density") + _TABLES


def _expr_text(v: Any, where: str, model: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return repr(v)  # a bare number is a convenience: slow_noise={"x": 0.5}
    raise ModelLanguageError(f"{where}: expected an expression string or a number, got {v!r}", model=model)


def _frozen(d: Mapping[str, Any]) -> Mapping[str, Any]:
    return types.MappingProxyType(dict(d))


@dataclass(frozen=True, eq=True)
class Model:
    """A fast/slow SDE written in the safe model language.

    Averaging scaling (the default when there are fast variables)::

        dX = f(X,Y) dt + alpha(X,Y) dU,   dY = g(X,Y)/eps dt + beta(X,Y)/sqrt(eps) dV

    Homogenization: ``dX = (f0/eps + f) dt + alpha dU``, ``dY = g/eps^2 dt + beta/eps dV``.
    ``"none"``: ``dX = f dt + alpha dU``, ``dY = g dt + beta dV`` (``eps`` may enter ``f``, ``g``
    itself through the name ``eps``). Noise is diagonal: one amplitude per component.

    Parameters
    ----------
    name : str
        Model name (letters, digits, ``_ . -``).
    slow : mapping of str to str
        Slow variable -> drift ``f``. A vector variable is declared as ``"X[k]"`` with its
        length in ``sizes``; the expression is then evaluated for ``k = 0 .. len-1``.
        Variables are stacked into the state vector in this order.
    fast : mapping of str to str, optional
        Fast variable -> drift ``g``.
    slow_noise, fast_noise : mapping of str to str, optional
        Diagonal noise amplitudes, keyed by the variable (``"X"`` or ``"X[i]"``). Slow noise
        defaults to ``"0"``; fast noise is required for every fast variable.
    slow_drift0 : mapping of str to str, optional
        Homogenization only: ``f0``, the part of the slow drift multiplied by ``1/eps``
        (default ``"0"``).
    params : mapping of str to float, optional
        Parameters and their defaults. Parameters used in sizes or indices must be integers.
    sizes : mapping of str to str or int, optional
        Length of each vector variable: an integer expression of parameters, e.g. ``"K*J"``.
    scaling : {"averaging", "homogenization", "none"} or Scaling, optional
        Default: averaging with fast variables, none without.
    default_eps : float, optional
        Scale separation used when none is given.
    description : str, optional
    potential : str, optional
        Known fact for validation: ``U`` of the slow variables with slow drift ``-grad U``.
    fast_invariant_density : str, optional
        Known fact for validation: unnormalised invariant density of the fast process with the
        slow variables frozen, an expression of the fast and slow variables.

    Raises
    ------
    ModelLanguageError
        On any invalid definition; expression errors point at the offending token.
    """

    name: str
    slow: Mapping[str, str]
    fast: Mapping[str, str] = field(default_factory=dict)
    slow_noise: Mapping[str, str] = field(default_factory=dict)
    fast_noise: Mapping[str, str] = field(default_factory=dict)
    slow_drift0: Mapping[str, str] = field(default_factory=dict)
    params: Mapping[str, float] = field(default_factory=dict)
    sizes: Mapping[str, str] = field(default_factory=dict)
    scaling: Scaling | str | None = None
    default_eps: float | None = None
    description: str = ""
    potential: str | None = None
    fast_invariant_density: str | None = None
    _parsed: ParsedModel = field(init=False, repr=False, compare=False)
    _hash: str = field(init=False, repr=False, compare=False)

    # -- construction and checks -------------------------------------------------------------
    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalised values are stored once, here
        name = self.name
        if not isinstance(name, str) or not _MODEL_NAME_RE.match(name) or len(name) > MAX_NAME_LENGTH:
            raise ModelLanguageError(f"model name {name!r} must be 1-{MAX_NAME_LENGTH} letters, "
                                     "digits, '_', '.' or '-'")

        def err(msg: str) -> ModelLanguageError:
            return ModelLanguageError(msg, model=name)

        if not isinstance(self.description, str):
            raise err(f"description must be a string, got {self.description!r}")
        for key in _TABLES:
            if not isinstance(getattr(self, key), Mapping):
                raise err(f"{key} must be a mapping, got {getattr(self, key)!r}")
        scaling = self.scaling
        if scaling is None:
            scaling = Scaling.AVERAGING if self.fast else Scaling.NONE
        try:
            scaling = Scaling(scaling.value if isinstance(scaling, Scaling) else scaling)
        except ValueError:
            raise err(f"scaling {self.scaling!r} must be one of "
                      f"{', '.join(s.value for s in Scaling)}") from None
        set_(self, "scaling", scaling)
        eps = self.default_eps
        if eps is not None:
            try:
                set_(self, "default_eps", positive_finite("default_eps", eps))
            except ValueError as e:
                raise err(str(e)) from None

        params: dict[str, float] = {}
        for p, v in self.params.items():
            if not isinstance(p, str) or not is_name(p) or p in RESERVED:
                raise err(f"parameter name {p!r} is invalid or reserved")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise err(f"parameter {p}={v!r} must be a finite number")
            params[p] = float(v)
        set_(self, "params", _frozen(params))

        def declare(table: Mapping[str, Any], kind: str) -> dict[str, tuple[str | None, str]]:
            out: dict[str, tuple[str | None, str]] = {}
            for key, text in table.items():
                m = _DECL_RE.match(key) if isinstance(key, str) else None
                if m is None or not is_name(m[1]) or (m[2] is not None and not is_name(m[2])):
                    raise err(f"{kind} variable {key!r} must be a name or name[index]")
                n, i = m[1], m[2]
                if n in RESERVED or n in params or i in RESERVED or i in params:
                    raise err(f"{kind} variable {key!r}: a name is reserved or already a parameter")
                if n in out:
                    raise err(f"{kind} variable {n!r} is declared twice")
                out[n] = (i, _expr_text(text, f"{kind} drift of {key}", name))
            return out

        slow = declare(self.slow, "slow")
        fast = declare(self.fast, "fast")
        if not slow:
            raise err("a model needs at least one slow variable")
        for n in slow.keys() & fast.keys():
            raise err(f"{n!r} is declared both slow and fast")
        states = {**slow, **fast}
        for n, (i, _) in states.items():
            if i is not None and i in states:
                raise err(f"index variable {i!r} of {n}[{i}] is already a variable name")
        set_(self, "slow", _frozen({_decl(n, i): t for n, (i, t) in slow.items()}))
        set_(self, "fast", _frozen({_decl(n, i): t for n, (i, t) in fast.items()}))

        for n in self.sizes:
            if n not in states:
                raise err(f"sizes: {n!r} is not a variable of the model")
            if states[n][0] is None:
                raise err(f"sizes: {n!r} is declared as a scalar; declare it as {n}[k] to make it a vector")
        sizes = {n: _expr_text(self.sizes[n], f"size of {n}", name)
                 for n, (i, _) in states.items() if i is not None and n in self.sizes}
        for n, (i, _) in states.items():
            if i is not None and n not in sizes:
                raise err(f"vector variable {n}[{i}] needs a length in sizes, e.g. sizes={{{n!r}: 'K'}}")
        set_(self, "sizes", _frozen(sizes))

        def terms(table: Mapping[str, Any], what: str, kind: str, decl: Mapping[str, tuple[str | None, str]],
                  default: str | None) -> dict[str, str]:
            given: dict[str, tuple[str, str]] = {}
            for key, text in table.items():
                m = _DECL_RE.match(key) if isinstance(key, str) else None
                if m is None or m[1] not in decl:
                    names = ", ".join(decl) or "(none)"
                    raise err(f"{what}: {key!r} is not a {kind} variable; {kind} variables are {names}")
                n, i = m[1], m[2]
                if i is not None and decl[n][0] is None:
                    raise err(f"{what}: {key!r} indexes the scalar variable {n!r}")
                if i is not None and (i in states or i in RESERVED or i in params or not is_name(i)):
                    raise err(f"{what}: index variable {i!r} of {key!r} is taken or invalid")
                if n in given:
                    raise err(f"{what}: {n!r} is given twice")
                given[n] = (_decl(n, i if i is not None else decl[n][0]),
                            _expr_text(text, f"{what} of {key}", name))
            out = {}
            for n, (i, _) in decl.items():  # declaration order, defaults filled in
                if n in given:
                    out[given[n][0]] = given[n][1]
                elif default is not None:
                    out[_decl(n, i)] = default
                else:
                    raise err(f"{what} of {n!r} is missing (give {what}={{{n!r}: ...}})")
            return out

        set_(self, "slow_noise", _frozen(terms(self.slow_noise, "slow_noise", "slow", slow, "0")))
        set_(self, "fast_noise", _frozen(terms(self.fast_noise, "fast_noise", "fast", fast, None)))
        if scaling is Scaling.HOMOGENIZATION:
            drift0 = terms(self.slow_drift0, "slow_drift0", "slow", slow, "0")
        elif self.slow_drift0:
            raise err("slow_drift0 is used only with scaling 'homogenization' "
                      f"(this model's is {scaling.value!r})")
        else:
            drift0 = {}
        set_(self, "slow_drift0", _frozen(drift0))
        for key in ("potential", "fast_invariant_density"):
            v = getattr(self, key)
            if v is not None:
                set_(self, key, _expr_text(v, key, name))

        set_(self, "_parsed", self._parse())
        set_(self, "_hash", hashlib.sha256(json.dumps(
            {"language": LANGUAGE_VERSION, **self.to_dict()}, separators=(",", ":"),
            ensure_ascii=True).encode()).hexdigest())
        try:  # the defaults must pass the integer and size checks
            self.resolve_params(None)
        except ValueError as e:
            raise ModelLanguageError(f"default parameters: {e}") from None

    def _parse(self) -> ParsedModel:
        int_params: set[str] = set()
        slow_decl = {_split(k): None for k in self.slow}
        fast_decl = {_split(k): None for k in self.fast}
        scope = Scope({n: i is not None for n, i in slow_decl},
                       {n: i is not None for n, i in fast_decl}, frozenset(self.params))

        def parse(text: str, label: str, index_vars: tuple[str, ...] = (), sc: _Scope = scope) -> Expr:
            return Parser(text, model=self.name, label=label, scope=sc, index_vars=index_vars,
                           int_params=int_params).expression()

        def variables(table: Mapping[str, str], kind: str) -> tuple[Variable, ...]:
            out = []
            for key in table:
                n, i = _split(key)
                size = None
                if i is not None:
                    size = Parser(self.sizes[n], model=self.name, label=f"size of {n}", scope=Scope(
                        {}, {}, frozenset(self.params)), int_params=int_params).size()
                out.append(Variable(kind, n, size))
            return tuple(out)

        slow, fast = variables(self.slow, "slow"), variables(self.fast, "fast")
        by_name = {v.name: v for v in (*slow, *fast)}

        def equations(table: Mapping[str, str], what: str) -> tuple[Equation, ...]:
            out = []
            for key, text in table.items():
                n, i = _split(key)
                label = f"{what} of {key}"
                out.append(Equation(by_name[n], i, parse(text, label, (i,) if i else ()), label, text))
            return tuple(out)

        potential = density = None
        if self.potential is not None:
            potential = parse(self.potential, "potential", (), Scope(scope.slow, scope.fast, scope.params,
                                                                     allow_fast=False))
        if self.fast_invariant_density is not None:
            density = parse(self.fast_invariant_density, "fast invariant density")
        return ParsedModel(
            slow, fast, equations(self.slow, "slow drift"), equations(self.slow_drift0, "slow drift0"),
            equations(self.slow_noise, "slow noise"), equations(self.fast, "fast drift"),
            equations(self.fast_noise, "fast noise"), potential, density,
            tuple(p for p in self.params if p in int_params))

    def __hash__(self) -> int:
        return hash(self._hash)

    def __reduce__(self):  # mapping proxies do not pickle; the definition does
        return (_model_from_dict, (self.to_dict(),))

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items() if k != "name")
        return f"Model({self.name!r}, {items})"

    # -- information (as the catalogue's ModelInfo) ------------------------------------------
    def parsed(self) -> ParsedModel:
        """The model's IR (parsed once, at construction)."""
        return self._parsed

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.params)

    @property
    def defaults(self) -> dict[str, float]:
        return dict(self.params)

    @property
    def uses_eps(self) -> bool:
        """Whether ``eps`` enters the dynamics (through the scaling or the name ``eps``)."""
        if self.scaling is not Scaling.NONE:
            return True
        return any(isinstance(n, Eps) for n in walk_model(self._parsed))

    def source_hash(self) -> str:
        """SHA-256 (hex) of the canonical JSON of the definition and the language version."""
        return self._hash

    def resolve_params(self, params: Mapping[str, float] | None = None) -> dict[str, float]:
        """Defaults updated with ``params``; raises ``ValueError`` naming any bad entry."""
        out = dict(self.params)
        for key, value in (params or {}).items():
            if key not in out:
                raise ValueError(f"unknown parameter {key!r} for model {self.name!r}; "
                                 f"its parameters are {', '.join(self.params) or '(none)'}")
            try:
                out[key] = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key}={value!r} of model {self.name!r} is not a number") from None
        for key, v in out.items():
            if not math.isfinite(v):
                raise ValueError(f"parameter {key}={v} of model {self.name!r} must be finite")
        for key in self._parsed.integer_params:
            if out[key] != math.floor(out[key]):
                raise ValueError(f"parameter {key}={out[key]:g} of model {self.name!r} must be an "
                                 "integer (it is used in sizes or indices)")
        ints = {k: int(out[k]) for k in self._parsed.integer_params}
        for v in (*self._parsed.slow, *self._parsed.fast):
            if v.is_vector:
                n = int(eval_index(v.size, {}, ints, self.name))
                if n < 1:
                    raise ValueError(f"size of {v.name} = {self.sizes[v.name]} is {n} for model "
                                     f"{self.name!r}; it must be >= 1")
        return out

    def _layout(self, params: Mapping[str, float]) -> dict[tuple[str, str], tuple[int, int | None]]:
        """(kind, name) -> (offset in its state vector, length or None for a scalar)."""
        ints = {k: int(params[k]) for k in self._parsed.integer_params}
        out = {}
        for vars_ in (self._parsed.slow, self._parsed.fast):
            off = 0
            for v in vars_:
                n = None if v.size is None else int(eval_index(v.size, {}, ints, self.name))
                out[(v.kind, v.name)] = (off, n)
                off += 1 if n is None else n
        return out

    def dims(self, params: Mapping[str, float] | None = None) -> tuple[int, int]:
        """(slow dimension m, fast dimension n) for the given parameters."""
        lay = self._layout(self.resolve_params(params))
        m = sum(n or 1 for (k, _), (_, n) in lay.items() if k == "slow")
        return m, sum(n or 1 for (k, _), (_, n) in lay.items() if k == "fast")

    def state_names(self, params: Mapping[str, float] | None = None) -> tuple[list[str], list[str]]:
        """Names of the slow and fast state components (``x``, ``X[0]``, ``X[1]``, ...)."""
        lay = self._layout(self.resolve_params(params))
        out: dict[str, list[str]] = {"slow": [], "fast": []}
        for (kind, name), (_, n) in lay.items():
            out[kind] += [name] if n is None else [f"{name}[{i}]" for i in range(n)]
        return out["slow"], out["fast"]

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON/TOML-ready definition (``from_dict`` inverts it)."""
        d: dict[str, Any] = {"name": self.name, "description": self.description,
                             "scaling": self.scaling.value}
        if self.default_eps is not None:
            d["default_eps"] = self.default_eps
        for key in ("potential", "fast_invariant_density"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        for key in _TABLES:
            d[key] = dict(getattr(self, key))
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "model") -> Model:
        """Model from a :meth:`to_dict`-style mapping; unknown keys are errors naming their path."""
        if not isinstance(data, Mapping):
            raise ModelLanguageError(f"{where}: expected a table, got {data!r}")
        for k in data:
            if k not in _KEYS:
                near = difflib.get_close_matches(str(k), _KEYS, n=1)
                hint = f"; did you mean {near[0]!r}?" if near else f"; expected one of {', '.join(_KEYS)}"
                raise ModelLanguageError(f"{where}.{k}: unknown key{hint}")
        for k in ("name", "slow"):
            if k not in data:
                raise ModelLanguageError(f"{where}.{k}: missing")
        kw: dict[str, Any] = {}
        for k, v in data.items():
            if k in _TABLES:
                if not isinstance(v, Mapping):
                    raise ModelLanguageError(f"{where}.{k}: expected a table, got {v!r}")
                for kk, vv in v.items():
                    num = isinstance(vv, (int, float)) and not isinstance(vv, bool)
                    if k == "params" and not num:
                        raise ModelLanguageError(f"{where}.{k}.{kk}: expected a number, got {vv!r}")
                    if k != "params" and not (num or isinstance(vv, str)):
                        raise ModelLanguageError(f"{where}.{k}.{kk}: expected an expression string, got {vv!r}")
            elif k in ("name", "description", "potential", "fast_invariant_density", "scaling"):
                if not isinstance(v, (str, Scaling)):
                    raise ModelLanguageError(f"{where}.{k}: expected a string, got {v!r}")
            kw[k] = v
        return cls(**kw)

    def to_toml(self) -> str:
        """The definition as a TOML document with a ``[model]`` table (see :func:`load_model_file`)."""
        d = self.to_dict()
        lines = ["[model]"]
        for k, v in d.items():
            if k not in _TABLES:
                lines.append(f"{k} = {_toml_value(v)}")
        for k in _TABLES:
            lines += ["", f"[model.{k}]"] + [f"{_toml_key(kk)} = {_toml_value(vv)}" for kk, vv in d[k].items()]
        return "\n".join(lines) + "\n"

    # -- evaluation --------------------------------------------------------------------------
    def numpy_functions(self, params: Mapping[str, float] | None = None,
                        eps: float | None = None) -> ModelFunctions:
        """Drift and noise as NumPy functions of batched states (a slow, simple reference).

        See :class:`ModelFunctions`. Invalid operations give NaN/inf without warnings.
        """
        return ModelFunctions(self, params, eps, "numpy")

    def torch_functions(self, params: Mapping[str, float] | None = None,
                        eps: float | None = None) -> ModelFunctions:
        """Drift and noise as differentiable PyTorch functions of batched states.

        See :class:`ModelFunctions`; dtype and device follow the inputs.
        """
        import torch  # noqa: F401  (fail here, not at the first call, when torch is missing)

        return ModelFunctions(self, params, eps, "torch")


def _decl(name: str, index: str | None) -> str:
    return name if index is None else f"{name}[{index}]"


def _split(key: str) -> tuple[str, str | None]:
    m = _DECL_RE.match(key)
    return m[1], m[2]


def _model_from_dict(d: dict[str, Any]) -> Model:
    return Model.from_dict(d)


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def _toml_value(v: Any) -> str:
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=True)  # JSON escapes are valid TOML basic-string escapes
    return repr(float(v))


def load_model_file(path: str | Path) -> Model:
    """Read a model from a TOML file.

    Layout::

        [model]               name, description, scaling, default_eps, potential,
                              fast_invariant_density
        [model.slow]          variable = "drift" (vectors as "X[k]" = "...")
        [model.fast]          variable = "drift"
        [model.slow_noise]    variable = "amplitude"
        [model.fast_noise]    variable = "amplitude"
        [model.slow_drift0]   homogenization: variable = "f0"
        [model.params]        name = default
        [model.sizes]         vector variable = "length expression" or integer

    Raises
    ------
    ModelLanguageError
        Naming the file and the key path of the first invalid entry.
    """
    src = f"model file {str(path)!r}"
    try:
        doc = read_toml(path, "model file")
    except ValueError as e:  # no TOML reader, no such file, invalid TOML
        raise ModelLanguageError(str(e)) from None
    for k in doc:
        if k != "model":
            raise ModelLanguageError(f"{src}: {k}: unknown key; the file holds one [model] table")
    if "model" not in doc:
        raise ModelLanguageError(f"{src}: no [model] table")
    try:
        return Model.from_dict(doc["model"], where="model")
    except ModelLanguageError as e:
        raise e.with_source(src) from None

