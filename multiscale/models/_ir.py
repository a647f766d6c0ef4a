"""The model language's vocabulary and its intermediate representation (IR).

The parser (:mod:`._parser`) turns expression text into these frozen dataclasses; the back ends
walk them: NumPy and PyTorch evaluation (:mod:`._evaluate`) and C++ code generation
(:mod:`._codegen`), one function per node type. ``Binary('pow', x, Num(3))`` with a small integer
literal exponent is left for the generator to expand into multiplications.
"""
from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any, Mapping, Union

import numpy as np

#: Version of the language's semantics; part of :meth:`Model.source_hash`.
LANGUAGE_VERSION = 1

#: Callable functions and their number of arguments. ``pow(a, b)`` parses to ``a ** b``;
#: ``min``/``max`` propagate NaN (like ``np.minimum``); ``atan2(y, x)`` as in C;
#: ``sin2pi(t)``/``cos2pi(t)`` are sin(2 pi t)/cos(2 pi t) with the period reduced exactly first
#: (t - floor(t)), accurate for the large arguments of fast periodic potentials (x/eps).
FUNCTIONS: Mapping[str, int] = types.MappingProxyType({
    "sin": 1, "cos": 1, "tan": 1, "exp": 1, "log": 1, "sqrt": 1, "tanh": 1, "abs": 1,
    "sinh": 1, "cosh": 1, "atan": 1, "asin": 1, "acos": 1, "log1p": 1, "expm1": 1, "erf": 1,
    "sin2pi": 1, "cos2pi": 1, "atan2": 2, "min": 2, "max": 2, "pow": 2,
})
#: Named constants.
CONSTANTS: Mapping[str, float] = types.MappingProxyType({"pi": math.pi, "e": math.e})
#: Names a model may not declare: they already mean something in every expression.
RESERVED = frozenset(FUNCTIONS) | {"sum", "eps"} | frozenset(CONSTANTS)


# ---------------------------------------------------------------------------------------------
# Nodes



@dataclass(frozen=True)
class Span:
    """Where a node came from: its character range ``[start, end)`` in ``text``."""

    text: str
    start: int
    end: int

    @property
    def source(self) -> str:
        return self.text[self.start:self.end]


def _span() -> Any:
    # Positions are for messages only: two nodes that differ only in position are equal.
    return field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class IdxNum:
    """Integer literal in an index."""

    value: int
    span: Span | None = _span()


@dataclass(frozen=True)
class IdxVar:
    """Index variable: the vector variable's own (``k`` in ``X[k]``) or a summation variable.

    Also allowed as a value (``k*dx``), where it is the loop value, not reduced modulo anything.
    """

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class IdxParam:
    """Integer-valued parameter in an index or size (checked by :meth:`Model.resolve_params`)."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class IdxBin:
    """Integer arithmetic: ``op`` in ``add sub mul floordiv`` (floordiv rounds toward -inf)."""

    op: str
    left: Index
    right: Index
    span: Span | None = _span()


Index = Union[IdxNum, IdxVar, IdxParam, IdxBin]


@dataclass(frozen=True)
class Num:
    """Numeric literal (``int`` when written as one, so ``x**3`` keeps an integer exponent)."""

    value: int | float
    span: Span | None = _span()


@dataclass(frozen=True)
class Param:
    """Model parameter."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class Const:
    """Named constant (``pi``, ``e``)."""

    name: str
    value: float
    span: Span | None = _span()


@dataclass(frozen=True)
class Eps:
    """The scale separation ``eps`` (for models where it enters the coefficients themselves)."""

    span: Span | None = _span()


@dataclass(frozen=True)
class State:
    """A state component: ``kind`` is ``'slow'`` or ``'fast'``; ``index`` is None for a scalar.

    A vector index is periodic: component ``index mod size``.
    """

    kind: str
    name: str
    index: Index | None
    span: Span | None = _span()


@dataclass(frozen=True)
class Unary:
    """``op`` is ``'neg'`` (unary plus is dropped when parsing)."""

    op: str
    arg: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Binary:
    """``op`` in ``add sub mul div pow``."""

    op: str
    left: Expr
    right: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Call:
    """Call of one of :data:`FUNCTIONS` (never ``pow``, which parses to ``Binary``)."""

    fn: str
    args: tuple[Expr, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class Sum:
    """``sum(body, var, lo, hi)``: body summed over ``var = lo, ..., hi-1`` (0 when hi <= lo)."""

    var: str
    lo: Index
    hi: Index
    body: Expr
    span: Span | None = _span()


Expr = Union[Num, Param, Const, Eps, State, Unary, Binary, Call, Sum, IdxVar]


@dataclass(frozen=True)
class Variable:
    """A declared state variable; ``size`` is None for a scalar."""

    kind: str
    name: str
    size: Index | None

    @property
    def is_vector(self) -> bool:
        return self.size is not None


@dataclass(frozen=True)
class Equation:
    """One expression for one variable: ``expr`` evaluated for each ``index`` in ``range(size)``.

    ``index`` is the index variable's name for a vector variable, None for a scalar.
    """

    variable: Variable
    index: str | None
    expr: Expr
    label: str
    text: str


@dataclass(frozen=True)
class ParsedModel:
    """All IR of a model. State vectors stack the variables in declaration order."""

    slow: tuple[Variable, ...]
    fast: tuple[Variable, ...]
    slow_drift: tuple[Equation, ...]
    slow_drift0: tuple[Equation, ...]  # empty unless scaling is homogenization
    slow_noise: tuple[Equation, ...]
    fast_drift: tuple[Equation, ...]
    fast_noise: tuple[Equation, ...]
    potential: Expr | None
    fast_invariant_density: Expr | None
    integer_params: tuple[str, ...]  # used in sizes or indices


# ---------------------------------------------------------------------------------------------
# Walking the IR

def walk(e: Any):
    """Every node of the expression ``e``, ``e`` first, depth first."""
    yield e
    for c in (getattr(e, "args", ()) if isinstance(e, Call) else
              [getattr(e, a) for a in ("arg", "left", "right", "index", "lo", "hi", "body") if hasattr(e, a)]):
        if c is not None:
            yield from walk(c)


def walk_model(p: ParsedModel):
    """Every node of every expression of a parsed model."""
    for eqs in (p.slow_drift, p.slow_drift0, p.slow_noise, p.fast_drift, p.fast_noise):
        for eq in eqs:
            yield from walk(eq.expr)
    for e in (p.potential, p.fast_invariant_density):
        if e is not None:
            yield from walk(e)


def eval_index(i: Index, env: Mapping[str, np.ndarray], ints: Mapping[str, int], model: str) -> np.ndarray:
    """The value of the index expression ``i``: ``env`` maps index variables to integer arrays,
    ``ints`` the integer parameters to their values; integer division by zero raises
    ``ValueError`` naming the model."""
    if isinstance(i, IdxNum):
        return np.asarray(i.value, np.int64)
    if isinstance(i, IdxVar):
        return env[i.name]
    if isinstance(i, IdxParam):
        return np.asarray(ints[i.name], np.int64)
    a, b = eval_index(i.left, env, ints, model), eval_index(i.right, env, ints, model)
    if i.op == "floordiv":
        if np.any(b == 0):
            where = f" in {i.span.source!r}" if i.span else ""
            raise ValueError(f"model {model!r}: integer division by zero{where}")
        return np.floor_divide(a, b)
    return {"add": np.add, "sub": np.subtract, "mul": np.multiply}[i.op](a, b)
