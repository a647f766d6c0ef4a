"""Parsing the model language: expression text -> checked Python ``ast`` -> IR (:mod:`._ir`).

Safety: the text is tokenised and parsed into Python's ``ast`` (never compiled to code), and a
whitelist walk turns it into the small IR; anything not listed is rejected with an error that
points at the offending token. Nothing in this module calls ``eval``/``exec``.
"""
from __future__ import annotations

import ast
import difflib
import io
import keyword
import math
import re
import tokenize
import warnings
from dataclasses import dataclass
from typing import Mapping

from .._errors import ModelLanguageError
from ._ir import (CONSTANTS, FUNCTIONS, RESERVED, Binary, Call, Const, Eps, Expr, IdxBin, IdxNum, IdxParam,
                  IdxVar, Index, Num, Param, Span, State, Sum, Unary)

#: Longest accepted expression, in characters.
MAX_EXPRESSION_LENGTH = 2000
#: Deepest accepted nesting of brackets and of expression nodes (``a+b+c`` counts two levels).
MAX_DEPTH = 50
#: Longest accepted variable, parameter or model name.
MAX_NAME_LENGTH = 64
_CALLS_HELP = ", ".join(FUNCTIONS) + " and sum(expr, j, lo, hi)"
_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")


def is_name(n: str) -> bool:
    """Whether ``n`` may name a variable, parameter or index."""
    # ASCII letters first and no leading underscore: safe as a C++ identifier part as well
    return bool(_NAME_RE.match(n)) and len(n) <= MAX_NAME_LENGTH and not keyword.iskeyword(n)


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
class Scope:
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


class Parser:
    """One expression of one field: checks the text and builds the IR."""

    def __init__(self, text: str, *, model: str, label: str, scope: Scope,
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
                 or v in RESERVED)
        if taken or not is_name(v):
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

