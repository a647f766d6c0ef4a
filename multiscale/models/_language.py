"""User-defined models: a safe expression language for drifts and noise amplitudes.

A :class:`Model` declares the slow and fast variables of an SDE with one expression string per
drift and noise term::

    Model("l96", slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"},
          params={"K": 8, "F": 20.0}, sizes={"X": "K"}, scaling="none")

Expressions use the state names, parameter names, numeric literals, ``+ - * / **`` (``^`` is a
synonym of ``**``), parentheses, the functions in :data:`FUNCTIONS`, the constants ``pi`` and
``e``, the scale separation ``eps`` and, for vector variables, periodic indices (``X[k-1]`` is
taken modulo the length of ``X``) and sums ``sum(body, j, lo, hi)`` over ``j = lo .. hi-1``.

Safety: the text is tokenised and parsed into Python's ``ast`` (never compiled to code), and a
whitelist walk turns it into the small IR below; anything not listed is rejected with an error
that points at the offending token. Nothing in this module calls ``eval``/``exec``.

The IR is what the back ends walk: NumPy and PyTorch evaluation here, and C++ code generation
later (one function per node type; ``Binary('pow', x, Num(3))`` with a small integer literal
exponent is left for the generator to expand into multiplications).
"""
from __future__ import annotations

import ast
import difflib
import hashlib
import io
import json
import keyword
import math
import operator
import re
import tokenize
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Union

import numpy as np

from ._catalog import Scaling

#: Longest accepted expression, in characters.
MAX_EXPRESSION_LENGTH = 2000
#: Deepest accepted nesting of brackets and of expression nodes (``a+b+c`` counts two levels).
MAX_DEPTH = 50
#: Longest accepted variable, parameter or model name.
MAX_NAME_LENGTH = 64
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
# Names a model may not declare: they already mean something in every expression.
_RESERVED = frozenset(FUNCTIONS) | {"sum", "eps"} | frozenset(CONSTANTS)
_CALLS_HELP = ", ".join(FUNCTIONS) + " and sum(expr, j, lo, hi)"


# ---------------------------------------------------------------------------------------------
# Errors


class ModelLanguageError(ValueError):
    """An invalid model definition or expression.

    The message names the model and the field (e.g. ``slow drift of x``) and, for an expression,
    shows it with a caret under the offending token.

    Attributes
    ----------
    reason : str
        What is wrong, without the location.
    model, field, source : str or None
        Model name, field label and (for files) the file the definition came from.
    text : str or None
        The expression; ``start``/``end`` are the offending character range in it.
    """

    def __init__(self, reason: str, *, model: str | None = None, field: str | None = None,
                 text: str | None = None, start: int | None = None, end: int | None = None,
                 source: str | None = None) -> None:
        self.reason, self.model, self.field, self.source = reason, model, field, source
        self.text, self.start, self.end = text, start, end
        super().__init__(self._render())

    def _render(self) -> str:
        where = [w for w in (self.source, None if self.model is None else f"model {self.model!r}",
                             self.field) if w]
        msg = f"{', '.join(where)}: {self.reason}" if where else self.reason
        if self.text is not None and self.start is not None:
            msg += "\n" + _caret(self.text, self.start, self.end)
        return msg

    def with_source(self, source: str) -> ModelLanguageError:
        """A copy of this error that also names where the definition came from."""
        return ModelLanguageError(self.reason, model=self.model, field=self.field, text=self.text,
                                  start=self.start, end=self.end, source=source)

    def __reduce__(self):  # keyword-only __init__: pickle through the attributes
        return (_rebuild_error, (self.reason, self.model, self.field, self.text, self.start,
                                 self.end, self.source))


def _rebuild_error(reason, model, field, text, start, end, source) -> ModelLanguageError:
    return ModelLanguageError(reason, model=model, field=field, text=text, start=start, end=end,
                              source=source)


def _caret(text: str, start: int, end: int | None) -> str:
    """The expression (a window of it when long) and a caret line under [start, end)."""
    shown = "".join(c if c.isprintable() else " " for c in text)  # one char per char
    start = min(max(start, 0), len(shown))
    end = min(max(end if end is not None else start + 1, start + 1), max(len(shown), start + 1))
    width = 76
    lo, hi = 0, len(shown)
    if hi > width:
        lo = max(0, start - 30)
        hi = min(len(shown), lo + width)
        lo = max(0, hi - width)
    pre, post = ("..." if lo > 0 else ""), ("..." if hi < len(shown) else "")
    col = len(pre) + start - lo
    n = max(1, min(end, max(hi, start + 1)) - start)
    return f"    {pre}{shown[lo:hi]}{post}\n    {' ' * col}{'^' * n}"


# ---------------------------------------------------------------------------------------------
# IR


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
# Parsing: text -> checked Python ast -> IR

_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.Div: "div", ast.Pow: "pow"}
_IDX_BINOPS = {ast.Add: "add", ast.Sub: "sub", ast.Mult: "mul", ast.FloorDiv: "floordiv"}
_FORBIDDEN = {
    ast.Lambda: "lambda expressions are not allowed",
    ast.List: "lists are not allowed", ast.Tuple: "tuples are not allowed",
    ast.Set: "sets are not allowed", ast.Dict: "dicts are not allowed",
    ast.ListComp: "comprehensions are not allowed", ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "generator expressions are not allowed",
    ast.IfExp: "conditional expressions (a if c else b) are not allowed",
    ast.Compare: "comparisons are not allowed",
    ast.BoolOp: "boolean operators (and, or, not) are not allowed",
    ast.NamedExpr: "assignment expressions (:=) are not allowed",
    ast.JoinedStr: "f-strings are not allowed", ast.FormattedValue: "f-strings are not allowed",
    ast.Starred: "argument unpacking (*) is not allowed",
    ast.Await: "await is not allowed", ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed", ast.Slice: "slices are not allowed",
}
_OP_TEXT = {ast.Mod: "%", ast.FloorDiv: "//", ast.MatMult: "@", ast.BitAnd: "&", ast.BitOr: "|",
            ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>"}


@dataclass
class _Scope:
    """Names an expression may use."""

    slow: Mapping[str, bool]  # name -> is vector
    fast: Mapping[str, bool]
    params: frozenset[str]
    allow_fast: bool = True
    allow_states: bool = True


def _python_text(text: str) -> tuple[str, list[int]]:
    """``^`` tokens replaced by ``**``; returns the new text and the replaced positions."""
    carets = [t.start[1] for t in tokenize.generate_tokens(io.StringIO(text).readline)
              if t.type == tokenize.OP and t.string == "^"]
    out, prev = [], 0
    for p in carets:
        out += [text[prev:p], "**"]
        prev = p + 1
    out.append(text[prev:])
    return "".join(out), carets


class _Parser:
    """One expression of one field: checks the text and builds the IR."""

    def __init__(self, text: str, *, model: str, label: str, scope: _Scope,
                 index_vars: tuple[str, ...] = (), int_params: set[str] | None = None) -> None:
        self.text, self.model, self.label, self.scope = text, model, label, scope
        self.index_vars = index_vars
        self.int_params = int_params if int_params is not None else set()
        self._lead = 0
        self._carets: list[int] = []

    # -- errors and positions ----------------------------------------------------------------
    def fail(self, reason: str, start: int | None = None, end: int | None = None) -> ModelLanguageError:
        if start is not None and end is None:
            end = start + 1
        return ModelLanguageError(reason, model=self.model, field=self.label, text=self.text,
                                  start=start, end=end)

    def _orig(self, p: int, is_end: bool = False) -> int:
        """Position in the user's text of position ``p`` of the parsed (``^`` -> ``**``) text."""
        shift = 0
        for i, o in enumerate(self._carets):
            n = o + i  # where this '**' starts in the parsed text
            if p <= n:
                break
            if p == n + 1:  # inside '**': the '^'
                return self._lead + o + (1 if is_end else 0)
            shift = i + 1
        return self._lead + p - shift

    def pos(self, node: ast.AST) -> tuple[int, int]:
        return self._orig(node.col_offset), self._orig(node.end_col_offset, True)

    def span(self, node: ast.AST) -> Span:
        return Span(self.text, *self.pos(node))

    def fail_at(self, reason: str, node: ast.AST) -> ModelLanguageError:
        return self.fail(reason, *self.pos(node))

    def src(self, node: ast.AST) -> str:
        s, e = self.pos(node)
        return self.text[s:e]

    # -- entry points ------------------------------------------------------------------------
    def tree(self) -> ast.expr:
        """Checks size, characters, nesting and syntax; returns the ast of the expression."""
        text = self.text
        if not isinstance(text, str):
            raise self.fail(f"expected an expression string, got {text!r}")
        if len(text) > MAX_EXPRESSION_LENGTH:
            raise self.fail(f"the expression is {len(text)} characters long; the limit is "
                            f"{MAX_EXPRESSION_LENGTH}", MAX_EXPRESSION_LENGTH, len(text))
        for i, ch in enumerate(text):
            if ch in " \t\r\n":
                continue
            if not " " <= ch <= "~":
                raise self.fail(f"character {ch!r} is not allowed (expressions are plain ASCII)", i)
            if ch == "\\":
                raise self.fail("backslashes are not allowed", i)
            if ch == "#":
                raise self.fail("comments are not allowed", i)
        if not text.strip():
            raise self.fail("the expression is empty")
        depth, quote = 0, None
        for i, ch in enumerate(text):  # before the parser, whose own limit is a RecursionError
            if quote:
                quote = None if ch == quote else quote
            elif ch in "'\"":
                quote = ch
            elif ch in "([{":
                depth += 1
                if depth > MAX_DEPTH:
                    raise self.fail(f"brackets nested deeper than {MAX_DEPTH} levels", i)
            elif ch in ")]}":
                depth -= 1
        # One line, no leading blanks: ast columns are then offsets into the text.
        flat = "".join(" " if c in "\t\r\n" else c for c in text)
        self._lead = len(flat) - len(flat.lstrip())
        flat = flat.strip()
        try:
            pytext, self._carets = _python_text(flat)
        except (tokenize.TokenError, SyntaxError):
            pytext, self._carets = flat, []  # let the parser word the syntax error
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. "invalid decimal literal" warnings
                tree = ast.parse(pytext, mode="eval")  # builds an ast only; nothing is compiled
        except SyntaxError as e:
            col = (e.offset or len(pytext) + 1) - 1 if e.lineno in (None, 1) else len(pytext)
            col = min(max(col, 0), len(pytext))
            end = e.end_offset - 1 if e.end_offset and e.end_lineno in (None, 1) else col + 1
            msg = e.msg or "invalid syntax"
            raise self.fail(f"syntax error: {msg}", self._orig(col),
                            self._orig(max(end, col + 1), True)) from None
        except (RecursionError, MemoryError):
            raise self.fail(f"the expression is nested too deeply (the limit is {MAX_DEPTH} levels)") from None
        stack = [(tree.body, 1)]
        skip = (ast.expr_context, ast.operator, ast.unaryop, ast.cmpop, ast.boolop)
        while stack:  # iterative: the tree may be deeper than Python's recursion limit
            node, d = stack.pop()
            if d > MAX_DEPTH:
                raise self.fail_at(f"the expression is nested deeper than {MAX_DEPTH} levels", node)
            stack.extend((c, d + 1) for c in ast.iter_child_nodes(node) if not isinstance(c, skip))
        return tree.body

    def expression(self) -> Expr:
        return self.value(self.tree(), self.index_vars)

    def size(self) -> Index:
        node = self.tree()
        return self.index(node, (), node, "size")

    # -- values ------------------------------------------------------------------------------
    def value(self, node: ast.AST, ivars: tuple[str, ...]) -> Expr:
        if isinstance(node, ast.Constant):
            return Num(self.number(node), self.span(node))
        if isinstance(node, ast.Name):
            return self.name(node, ivars)
        if isinstance(node, ast.BinOp):
            op = _BINOPS.get(type(node.op))
            if op is None:
                raise self.bad_operator(node)
            return Binary(op, self.value(node.left, ivars), self.value(node.right, ivars), self.span(node))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.value(node.operand, ivars)
            if isinstance(node.op, ast.USub):
                if isinstance(node.operand, ast.Constant):  # -3 is a literal: x**-3 stays a pow
                    return Num(-self.number(node.operand), self.span(node))
                return Unary("neg", self.value(node.operand, ivars), self.span(node))
            if isinstance(node.op, ast.Not):
                raise self.fail_at(_FORBIDDEN[ast.BoolOp], node)
            raise self.fail_at("operator '~' is not allowed", node)
        if isinstance(node, ast.Call):
            return self.call(node, ivars)
        if isinstance(node, ast.Subscript):
            return self.subscript(node, ivars)
        if isinstance(node, ast.Attribute):
            raise self.attribute(node)
        what = _FORBIDDEN.get(type(node), f"{type(node).__name__} expressions are not allowed")
        raise self.fail_at(what, node)

    def number(self, node: ast.Constant) -> int | float:
        v = node.value
        what = {str: "string literals are not allowed", bytes: "byte strings are not allowed",
                complex: "complex numbers are not allowed", bool: f"{v} is not allowed",
                type(None): "None is not allowed", type(...): "'...' is not allowed"}
        if type(v) not in (int, float):
            raise self.fail_at(what.get(type(v), f"constant {self.src(node)!r} is not allowed"), node)
        try:
            finite = math.isfinite(float(v))
        except OverflowError:
            finite = False
        if not finite:
            raise self.fail_at(f"number {self.src(node)} is not finite", node)
        return v

    def attribute(self, node: ast.Attribute) -> ModelLanguageError:
        s, e = self.pos(node)
        vs, ve = self.pos(node.value)
        # point at ".attr", not at the object before it
        return self.fail(f"attribute access is not allowed ('.{node.attr}')", ve if ve < e else s, e)

    def bad_operator(self, node: ast.BinOp) -> ModelLanguageError:
        sym = _OP_TEXT.get(type(node.op), type(node.op).__name__)
        _, ls = self.pos(node.left)
        rs, _ = self.pos(node.right)
        gap = self.text[ls:rs]  # the operator, between closing and opening brackets
        k = next((i for i, c in enumerate(gap) if c not in " ()"), 0)
        start = ls + k
        end = start + max(1, len(gap[k:].rstrip(" (")))
        extra = " (it is integer division, allowed only in indices)" if sym == "//" else ""
        return self.fail(f"operator {sym!r} is not allowed{extra}; use + - * / ** ^", start, end)

    def suggest(self, name: str, choices: list[str]) -> str:
        near = difflib.get_close_matches(name, choices, n=1)
        if near:
            return f"; did you mean {near[0]!r}?"
        return f"; names here are {', '.join(choices)}" if 0 < len(choices) <= 20 else ""

    def known(self, ivars: tuple[str, ...]) -> list[str]:
        sc = self.scope
        states = [*sc.slow, *(sc.fast if sc.allow_fast else ())] if sc.allow_states else []
        return [*states, *sorted(sc.params), *ivars, *CONSTANTS, "eps"]

    def state_kind(self, name: str, node: ast.AST) -> str | None:
        sc = self.scope
        kind = "slow" if name in sc.slow else "fast" if name in sc.fast else None
        if kind is not None and not sc.allow_states:
            raise self.fail_at(f"state {name!r} cannot appear here", node)
        if kind == "fast" and not sc.allow_fast:
            raise self.fail_at(f"{name!r} is a fast variable; only slow variables may appear here", node)
        return kind

    def name(self, node: ast.Name, ivars: tuple[str, ...]) -> Expr:
        n = node.id
        if n in ivars:
            return IdxVar(n, self.span(node))
        if n in self.scope.params:
            return Param(n, self.span(node))
        if n in CONSTANTS:
            return Const(n, CONSTANTS[n], self.span(node))
        if n == "eps":
            return Eps(self.span(node))
        kind = self.state_kind(n, node)
        if kind is not None:
            if (self.scope.slow if kind == "slow" else self.scope.fast)[n]:
                raise self.fail_at(f"vector variable {n!r} needs an index, e.g. {n}[k]", node)
            return State(kind, n, None, self.span(node))
        if n in FUNCTIONS or n == "sum":
            raise self.fail_at(f"function {n!r} must be called", node)
        raise self.fail_at(f"unknown name {n!r}{self.suggest(n, self.known(ivars))}", node)

    def call(self, node: ast.Call, ivars: tuple[str, ...]) -> Expr:
        f = node.func
        if isinstance(f, ast.Attribute):
            raise self.attribute(f)
        if not isinstance(f, ast.Name):
            raise self.fail_at(f"calls are limited to {_CALLS_HELP}", f)
        fn = f.id
        if fn != "sum" and fn not in FUNCTIONS:
            raise self.fail_at(f"calls are limited to {_CALLS_HELP}; {fn!r} is not one of them", f)
        for kw in node.keywords:
            what = "argument unpacking (**) is" if kw.arg is None else "keyword arguments are"
            raise self.fail_at(f"{what} not allowed", kw)
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail_at(_FORBIDDEN[ast.Starred], a)
        want = 4 if fn == "sum" else FUNCTIONS[fn]
        if len(node.args) != want:
            args = f"{want} argument{'s' * (want != 1)}"
            sig = " (sum(expr, j, lo, hi))" if fn == "sum" else ""
            msg = f"{fn}() takes {args}{sig}, got {len(node.args)}"
            if len(node.args) > want:
                raise self.fail(msg, self.pos(node.args[want])[0], self.pos(node.args[-1])[1])
            raise self.fail_at(msg, node)
        if fn == "sum":
            return self.sum(node, ivars)
        args = tuple(self.value(a, ivars) for a in node.args)
        if fn == "pow":
            return Binary("pow", args[0], args[1], self.span(node))
        return Call(fn, args, self.span(node))

    def sum(self, node: ast.Call, ivars: tuple[str, ...]) -> Expr:
        body, var, lo, hi = node.args
        if not isinstance(var, ast.Name):
            raise self.fail_at("the summation variable (2nd argument of sum) must be a plain name", var)
        v = var.id
        if v in ivars:
            raise self.fail_at(f"summation variable {v!r} is already in use here", var)
        taken = (v in self.scope.slow or v in self.scope.fast or v in self.scope.params
                 or v in _RESERVED)
        if taken or not _is_name(v):
            raise self.fail_at(f"{v!r} cannot be a summation variable: the name is taken or invalid", var)
        return Sum(v, self.index(lo, ivars, lo), self.index(hi, ivars, hi),
                   self.value(body, (*ivars, v)), self.span(node))

    def subscript(self, node: ast.Subscript, ivars: tuple[str, ...]) -> Expr:
        base = node.value
        if isinstance(base, ast.Attribute):
            raise self.attribute(base)
        if not isinstance(base, ast.Name):
            raise self.fail_at("only a vector variable can be indexed", base)
        n = base.id
        kind = self.state_kind(n, base)
        if kind is None:
            if n in self.known(ivars) or n in FUNCTIONS or n == "sum":
                raise self.fail_at(f"{n!r} is not a vector variable and cannot be indexed", base)
            raise self.fail_at(f"unknown name {n!r}{self.suggest(n, self.known(ivars))}", base)
        if not (self.scope.slow if kind == "slow" else self.scope.fast)[n]:
            raise self.fail_at(f"{n!r} is a scalar variable and cannot be indexed", base)
        sl = node.slice
        if isinstance(sl, ast.Tuple):
            raise self.fail_at("one index per subscript (got a tuple)", sl)
        return State(kind, n, self.index(sl, ivars, sl), self.span(node))

    # -- indices -----------------------------------------------------------------------------
    def index(self, node: ast.AST, ivars: tuple[str, ...], root: ast.AST, noun: str = "index") -> Index:
        def bad(detail: str, at: ast.AST = node) -> ModelLanguageError:
            return self.fail_at(f"{noun} {self.src(root)!r} is not an integer expression ({detail})", at)

        if isinstance(node, ast.Constant):
            if type(node.value) is int:
                return IdxNum(node.value, self.span(node))
            if type(node.value) is float:
                raise bad(f"{self.src(node)} is not an integer")
            raise bad(f"{self.src(node)} is not an integer literal")
        if isinstance(node, ast.Name):
            n = node.id
            if n in ivars:
                return IdxVar(n, self.span(node))
            if n in self.scope.params:
                self.int_params.add(n)
                return IdxParam(n, self.span(node))
            if n in self.scope.slow or n in self.scope.fast:
                raise bad(f"{n!r} is a state; {noun}s use index variables, integer literals and "
                          f"integer parameters")
            if n in CONSTANTS or n == "eps":
                raise bad(f"{n} is not an integer")
            allowed = [*ivars, *sorted(self.scope.params)]
            raise bad(f"unknown name {n!r}{self.suggest(n, allowed)}")
        if isinstance(node, ast.BinOp):
            op = _IDX_BINOPS.get(type(node.op))
            if op is None:
                sym = "/" if isinstance(node.op, ast.Div) else _OP_TEXT.get(type(node.op), "**")
                hint = "; use // for integer division" if sym == "/" else \
                    "; indices are already periodic" if sym == "%" else ""
                raise bad(f"operator {sym!r} is not allowed{hint}")
            return IdxBin(op, self.index(node.left, ivars, root, noun),
                          self.index(node.right, ivars, root, noun), self.span(node))
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.UAdd):
                return self.index(node.operand, ivars, root, noun)
            if isinstance(node.op, ast.USub):
                if isinstance(node.operand, ast.Constant) and type(node.operand.value) is int:
                    return IdxNum(-node.operand.value, self.span(node))
                arg = self.index(node.operand, ivars, root, noun)
                return IdxBin("sub", IdxNum(0), arg, self.span(node))
        if isinstance(node, ast.Attribute):
            raise self.attribute(node)
        if isinstance(node, ast.Slice):
            raise self.fail_at("slices are not allowed", node)
        raise bad("only + - * // of index variables, integers and integer parameters")


# ---------------------------------------------------------------------------------------------
# The model

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
_DECL_RE = re.compile(r"\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\[\s*([A-Za-z][A-Za-z0-9_]*)\s*\])?\s*\Z")
_MODEL_NAME_RE = re.compile(r"[A-Za-z0-9_.\-]+\Z")
_TABLES = ("slow", "fast", "slow_noise", "fast_noise", "slow_drift0", "params", "sizes")
_KEYS = ("name", "description", "scaling", "default_eps", "potential", "fast_invariant_density") + _TABLES


def _is_name(n: str) -> bool:
    # ASCII letters first and no leading underscore: safe as a C++ identifier part as well
    return bool(_NAME_RE.match(n)) and len(n) <= MAX_NAME_LENGTH and not keyword.iskeyword(n)


def _expr_text(v: Any, where: str, model: str) -> str:
    if isinstance(v, str):
        return v
    if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
        return repr(v)  # a bare number is a convenience: slow_noise={"x": 0.5}
    raise ModelLanguageError(f"{where}: expected an expression string or a number, got {v!r}", model=model)


def _positive_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


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
            if not _positive_number(eps):
                raise err(f"default_eps={eps!r} must be a finite number > 0")
            set_(self, "default_eps", float(eps))

        params: dict[str, float] = {}
        for p, v in self.params.items():
            if not isinstance(p, str) or not _is_name(p) or p in _RESERVED:
                raise err(f"parameter name {p!r} is invalid or reserved")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise err(f"parameter {p}={v!r} must be a finite number")
            params[p] = float(v)
        set_(self, "params", _frozen(params))

        def declare(table: Mapping[str, Any], kind: str) -> dict[str, tuple[str | None, str]]:
            out: dict[str, tuple[str | None, str]] = {}
            for key, text in table.items():
                m = _DECL_RE.match(key) if isinstance(key, str) else None
                if m is None or not _is_name(m[1]) or (m[2] is not None and not _is_name(m[2])):
                    raise err(f"{kind} variable {key!r} must be a name or name[index]")
                n, i = m[1], m[2]
                if n in _RESERVED or n in params or i in _RESERVED or i in params:
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
                if i is not None and (i in states or i in _RESERVED or i in params or not _is_name(i)):
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
        scope = _Scope({n: i is not None for n, i in slow_decl},
                       {n: i is not None for n, i in fast_decl}, frozenset(self.params))

        def parse(text: str, label: str, index_vars: tuple[str, ...] = (), sc: _Scope = scope) -> Expr:
            return _Parser(text, model=self.name, label=label, scope=sc, index_vars=index_vars,
                           int_params=int_params).expression()

        def variables(table: Mapping[str, str], kind: str) -> tuple[Variable, ...]:
            out = []
            for key in table:
                n, i = _split(key)
                size = None
                if i is not None:
                    size = _Parser(self.sizes[n], model=self.name, label=f"size of {n}", scope=_Scope(
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
            potential = parse(self.potential, "potential", (), _Scope(scope.slow, scope.fast, scope.params,
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
        return any(isinstance(n, Eps) for n in _walk_model(self._parsed))

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
                n = int(_eval_index(v.size, {}, ints, self.name))
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
                n = None if v.size is None else int(_eval_index(v.size, {}, ints, self.name))
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
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise ModelLanguageError("reading a model file needs Python >= 3.11 or "
                                     "`pip install tomli`") from None
    src = f"model file {str(path)!r}"
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise ModelLanguageError(f"{src} does not exist") from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ModelLanguageError(f"{src}: {e}") from None
    for k in doc:
        if k != "model":
            raise ModelLanguageError(f"{src}: {k}: unknown key; the file holds one [model] table")
    if "model" not in doc:
        raise ModelLanguageError(f"{src}: no [model] table")
    try:
        return Model.from_dict(doc["model"], where="model")
    except ModelLanguageError as e:
        raise e.with_source(src) from None


# ---------------------------------------------------------------------------------------------
# Evaluation: IR -> closures over precomputed integer index arrays

def _walk(e: Any):
    yield e
    for c in (getattr(e, "args", ()) if isinstance(e, Call) else
              [getattr(e, a) for a in ("arg", "left", "right", "index", "lo", "hi", "body") if hasattr(e, a)]):
        if c is not None:
            yield from _walk(c)


def _walk_model(p: ParsedModel):
    for eqs in (p.slow_drift, p.slow_drift0, p.slow_noise, p.fast_drift, p.fast_noise):
        for eq in eqs:
            yield from _walk(eq.expr)
    for e in (p.potential, p.fast_invariant_density):
        if e is not None:
            yield from _walk(e)


def _eval_index(i: Index, env: Mapping[str, np.ndarray], ints: Mapping[str, int], model: str) -> np.ndarray:
    if isinstance(i, IdxNum):
        return np.asarray(i.value, np.int64)
    if isinstance(i, IdxVar):
        return env[i.name]
    if isinstance(i, IdxParam):
        return np.asarray(ints[i.name], np.int64)
    a, b = _eval_index(i.left, env, ints, model), _eval_index(i.right, env, ints, model)
    if i.op == "floordiv":
        if np.any(b == 0):
            where = f" in {i.span.source!r}" if i.span else ""
            raise ValueError(f"model {model!r}: integer division by zero{where}")
        return np.floor_divide(a, b)
    return {"add": np.add, "sub": np.subtract, "mul": np.multiply}[i.op](a, b)


_ARITH = {"add": operator.add, "sub": operator.sub, "mul": operator.mul, "div": operator.truediv,
          "pow": operator.pow}
_NP_NAMES = {"atan": "arctan", "asin": "arcsin", "acos": "arccos", "atan2": "arctan2",
             "min": "minimum", "max": "maximum"}


def _np_function(fn: str) -> Callable[..., Any]:
    if fn in ("sin2pi", "cos2pi"):
        trig = np.sin if fn == "sin2pi" else np.cos
        return lambda t: trig(2 * np.pi * (t - np.floor(t)))
    if fn == "erf":
        from scipy.special import erf  # scipy is a dependency; loaded only by models using erf

        return erf
    return getattr(np, _NP_NAMES.get(fn, fn))


Term = Union[float, Callable[["_Eval"], Any]]


class _Lowering:
    """Turns IR into terms: a float (folded constant) or a closure of an :class:`_Eval`.

    A closure inside ``r`` nested index loops returns an array of shape ``(B or 1, d_1..d_r)``
    (dimensions of 1 broadcast); state reads are gathers with precomputed column arrays.
    """

    def __init__(self, model: Model, values: Mapping[str, float], eps: float | None) -> None:
        self.model, self.values, self.eps = model, values, eps
        self.ints = {k: int(values[k]) for k in model.parsed().integer_params}
        self.layout = model._layout(values)

    def index(self, i: Index, env: Mapping[str, np.ndarray], rank: int) -> np.ndarray:
        a = _eval_index(i, env, self.ints, self.model.name)
        return np.asarray(a, np.int64).reshape((1,) * (rank - np.ndim(a)) + np.shape(a))

    def equation(self, eq: Equation) -> tuple[int, Term]:
        off, n = self.layout[(eq.variable.kind, eq.variable.name)]
        if n is None:
            return 1, self.value(eq.expr, {}, 0)
        return n, self.value(eq.expr, {eq.index: np.arange(n, dtype=np.int64)}, 1)

    def value(self, e: Expr, env: Mapping[str, np.ndarray], rank: int) -> Term:
        if isinstance(e, Num):
            return float(e.value)
        if isinstance(e, Param):
            return self.values[e.name]
        if isinstance(e, Const):
            return e.value
        if isinstance(e, Eps):
            if self.eps is None:
                raise ValueError(f"model {self.model.name!r} uses eps: give eps= (it has no default_eps)")
            return float(self.eps)
        if isinstance(e, IdxVar):
            arr = env[e.name].astype(np.float64)[None]
            return lambda ev: ev.lift(arr)
        if isinstance(e, State):
            off, n = self.layout[(e.kind, e.name)]
            if e.index is None:
                cols = np.full((1,) * rank, off, np.int64).reshape((1,) * rank)
            else:
                cols = off + np.mod(self.index(e.index, env, rank), n)
            src = "x" if e.kind == "slow" else "y"
            return lambda ev: ev.take(src, cols)
        if isinstance(e, Unary):  # 'neg'
            a = self.value(e.arg, env, rank)
            return -a if isinstance(a, float) else (lambda ev: -a(ev))
        if isinstance(e, Binary):
            return self.apply(_ARITH[e.op], [self.value(e.left, env, rank), self.value(e.right, env, rank)])
        if isinstance(e, Call):
            args = [self.value(a, env, rank) for a in e.args]
            return self.apply(e.fn, args)
        if isinstance(e, Sum):
            return self.sum(e, env, rank)
        raise TypeError(f"unknown IR node {e!r}")  # pragma: no cover

    def apply(self, f: str | Callable[..., Any], args: list[Term]) -> Term:
        if all(isinstance(a, float) for a in args):  # fold constants (parameters included)
            fn = _np_function(f) if isinstance(f, str) else f
            with np.errstate(all="ignore"):
                return float(fn(*(np.float64(a) for a in args)))
        getters = [(lambda ev, a=a: a) if isinstance(a, float) else a for a in args]
        if isinstance(f, str):
            return lambda ev: ev.call(f, [g(ev) for g in getters])
        if len(getters) == 2:
            g0, g1 = getters
            return lambda ev: f(g0(ev), g1(ev))
        return lambda ev: f(*(g(ev) for g in getters))  # pragma: no cover

    def sum(self, e: Sum, env: Mapping[str, np.ndarray], rank: int) -> Term:
        lo, hi = np.broadcast_arrays(self.index(e.lo, env, rank), self.index(e.hi, env, rank))
        count = np.maximum(hi - lo, 0)
        L = int(count.max()) if count.size else 0
        if L == 0:
            return 0.0
        m = np.arange(L, dtype=np.int64).reshape((1,) * rank + (L,))
        inner = {k: v[..., None] for k, v in env.items()}
        inner[e.var] = lo[..., None] + m
        mask = m < count[..., None]
        body = self.value(e.body, inner, rank + 1)
        if isinstance(body, float):
            total = (count * body).astype(np.float64)[None]
            return lambda ev: ev.lift(total)
        return lambda ev: ev.where(mask, body(ev)).sum(-1)


class _Eval:
    """One evaluation: the inputs and the array library (NumPy or torch)."""

    def __init__(self, fns: ModelFunctions, x: Any, y: Any) -> None:
        self.fns, self.x, self.y = fns, x, y
        self.torch = fns.backend == "torch"

    def _cached(self, arr: np.ndarray, dtype: Any) -> Any:
        import torch

        key = (id(arr), str(self.x.device), dtype)
        t = self.fns._cache.get(key)
        if t is None:
            t = self.fns._cache[key] = torch.as_tensor(arr, dtype=dtype, device=self.x.device)
        return t

    def take(self, src: str, cols: np.ndarray) -> Any:
        a = self.x if src == "x" else self.y
        if self.torch:
            import torch

            return a[:, self._cached(cols, torch.long)]
        return a[:, cols]

    def lift(self, arr: np.ndarray) -> Any:
        return self._cached(arr, self.x.dtype) if self.torch else arr.astype(self.x.dtype)

    def where(self, mask: np.ndarray, a: Any) -> Any:
        if self.torch:
            import torch

            return torch.where(self._cached(mask, torch.bool), a, 0.0)
        return np.where(mask, a, 0.0)

    def call(self, fn: str, args: list[Any]) -> Any:
        if self.torch:
            import torch

            if fn in ("sin2pi", "cos2pi"):  # floor has zero gradient: d/dt is 2 pi cos(2 pi t)
                trig = torch.sin if fn == "sin2pi" else torch.cos
                return trig(2 * math.pi * (args[0] - torch.floor(args[0])))
            f = {"min": torch.minimum, "max": torch.maximum}.get(fn) or getattr(torch, fn)
            if len(args) == 2:  # torch's binary functions want tensors on both sides
                args = [a if isinstance(a, torch.Tensor) else torch.as_tensor(a, dtype=self.x.dtype,
                                                                               device=self.x.device)
                        for a in args]
            return f(*args)
        return _np_function(fn)(*args)


class ModelFunctions:
    """A model's coefficients as functions of batched states, for fixed parameters and eps.

    Every method takes ``x`` of shape ``(B, m)`` and ``y`` of shape ``(B, n)`` (``y`` may be
    None when the model has no fast variables) and returns ``(B, m)`` or ``(B, n)``; the
    potential and the fast density return ``(B,)``. The coefficients are the unscaled ones
    (``f``, ``f0``, ``alpha``, ``g``, ``beta``): the ``1/eps`` factors of the scaling are the
    integrator's business; ``eps`` is used only where an expression names it.

    Attributes
    ----------
    params : dict
        The resolved parameters.
    eps : float or None
    dims : (int, int)
        Slow and fast dimension.
    backend : {"numpy", "torch"}
    """

    def __init__(self, model: Model, params: Mapping[str, float] | None, eps: float | None,
                 backend: str) -> None:
        self.model = model
        self.params = model.resolve_params(params)
        if eps is None:
            eps = model.default_eps
        elif not _positive_number(eps):
            raise ValueError(f"eps={eps!r} must be a finite number > 0")
        self.eps = None if eps is None else float(eps)
        self.backend = backend
        self.dims = model.dims(self.params)
        self._cache: dict[Any, Any] = {}
        low = _Lowering(model, self.params, self.eps)
        p = model.parsed()
        self._terms = {key: [low.equation(eq) for eq in getattr(p, key)]
                       for key in ("slow_drift", "slow_drift0", "slow_noise", "fast_drift", "fast_noise")}
        self._potential = None if p.potential is None else low.value(p.potential, {}, 0)
        self._density = None if p.fast_invariant_density is None else low.value(p.fast_invariant_density, {}, 0)

    # -- inputs and assembly -----------------------------------------------------------------
    def _inputs(self, x: Any, y: Any) -> tuple[Any, Any]:
        m, n = self.dims
        if self.backend == "torch":
            import torch

            if not isinstance(x, torch.Tensor) or not x.is_floating_point():
                raise TypeError(f"x must be a floating-point torch tensor, got {type(x).__name__}")
            if y is None and n == 0:
                y = x.new_zeros((x.shape[0] if x.ndim else 0, 0))
            if not isinstance(y, torch.Tensor) or y.dtype != x.dtype or y.device != x.device:
                raise TypeError("y must be a torch tensor with x's dtype and device")
        else:
            x = np.asarray(x)
            x = x if x.dtype in (np.float32, np.float64) else x.astype(np.float64)
            y = np.zeros((x.shape[0] if x.ndim else 0, 0), x.dtype) if y is None and n == 0 else \
                np.asarray(y, dtype=x.dtype)
        if x.ndim != 2 or x.shape[1] != m:
            raise ValueError(f"x must have shape (B, {m}) for model {self.model.name!r}, got {tuple(x.shape)}")
        if y.ndim != 2 or y.shape[1] != n or y.shape[0] != x.shape[0]:
            raise ValueError(f"y must have shape ({x.shape[0]}, {n}) for model {self.model.name!r}, "
                             f"got {tuple(y.shape)}")
        return x, y

    def _assemble(self, key: str, x: Any, y: Any) -> Any:
        x, y = self._inputs(x, y)
        ev = _Eval(self, x, y)
        B = x.shape[0]
        with np.errstate(all="ignore"):
            parts = []
            for n, term in self._terms[key]:
                if isinstance(term, float):
                    parts.append(self._full(x, B, n, term))
                    continue
                a = term(ev)
                if a.ndim == 1:  # scalar variable
                    a = a.reshape(-1, 1)
                parts.append(a.expand(B, n) if ev.torch else np.broadcast_to(a, (B, n)))
        if not parts:
            return self._full(x, B, self.dims[0] if key.startswith("slow") else self.dims[1], 0.0)
        if ev.torch:
            import torch

            return torch.cat(parts, dim=1)
        return np.concatenate(parts, axis=1)

    def _scalar(self, term: Term | None, what: str, x: Any, y: Any) -> Any:
        if term is None:
            raise ValueError(f"model {self.model.name!r} declares no {what}")
        x, y = self._inputs(x, y)
        if isinstance(term, float):
            return self._full(x, x.shape[0], 1, term)[:, 0]
        with np.errstate(all="ignore"):
            a = term(_Eval(self, x, y))
        return a.expand(x.shape[0]) if self.backend == "torch" else np.broadcast_to(a, (x.shape[0],)).copy()

    def _full(self, x: Any, B: int, n: int, v: float) -> Any:
        return x.new_full((B, n), v) if self.backend == "torch" else np.full((B, n), v, x.dtype)

    # -- the coefficients --------------------------------------------------------------------
    def slow_drift(self, x: Any, y: Any = None) -> Any:
        """``f(x, y)``, shape (B, m)."""
        return self._assemble("slow_drift", x, y)

    def slow_drift0(self, x: Any, y: Any = None) -> Any:
        """``f0(x, y)`` (homogenization; zeros otherwise), shape (B, m)."""
        return self._assemble("slow_drift0", x, y)

    def slow_noise(self, x: Any, y: Any = None) -> Any:
        """Diagonal slow noise amplitudes ``alpha(x, y)``, shape (B, m)."""
        return self._assemble("slow_noise", x, y)

    def fast_drift(self, x: Any, y: Any = None) -> Any:
        """``g(x, y)``, shape (B, n)."""
        return self._assemble("fast_drift", x, y)

    def fast_noise(self, x: Any, y: Any = None) -> Any:
        """Diagonal fast noise amplitudes ``beta(x, y)``, shape (B, n)."""
        return self._assemble("fast_noise", x, y)

    def potential(self, x: Any) -> Any:
        """The declared potential ``U(x)``, shape (B,)."""
        return self._scalar(self._potential, "potential", x, None if self.dims[1] == 0 else
                            self._zeros_fast(x))

    def fast_invariant_density(self, x: Any, y: Any) -> Any:
        """The declared unnormalised fast invariant density, shape (B,)."""
        return self._scalar(self._density, "fast invariant density", x, y)

    def _zeros_fast(self, x: Any) -> Any:
        n = self.dims[1]
        if self.backend == "torch":
            return x.new_zeros((x.shape[0], n))
        x = np.asarray(x)
        return np.zeros((x.shape[0], n), x.dtype if x.dtype in (np.float32, np.float64) else np.float64)
