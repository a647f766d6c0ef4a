"""The resolved drift ``R`` of a ring surrogate as a small stack program (portable format v2).

A :class:`multiscale.Model`'s slow drift is an expression tree (:mod:`multiscale.models._ir`).
It is lowered here, for fixed parameters, to postfix code that any reader evaluates with a
stack of doubles and no compiler: the C++ evaluator (``evaluator.h``) one lane at a time, the
TorchScript / ``torch.export`` modules on whole ``(n, lanes)`` tensors. Each equation of the
model (one per declared slow variable) is one program over its ``lanes`` components; periodic
indices, sums (unrolled, with masks where the bound depends on the lane) and index variables
used as values become per-lane tables, and constant sub-expressions are folded exactly as the
NumPy/torch evaluator folds them (float64, parameters included), so the programs reproduce
``Model.torch_functions(params).slow_drift`` to rounding.

Opcodes (``code`` rows are ``(opcode, operand)``; docs/surrogate_format.md):

===  ========  ==========================================================================
 1   CONST c   push ``constants[c]``
 2   LANES t   push ``lanes[t][lane]`` (a per-lane number: an index value, a folded sum)
 3   LOAD t    push ``x[lanes[t][lane]]`` (a state component, index already reduced)
 4   NEG       ``a -> -a``
 5   ADD ...   ``5 add, 6 sub, 7 mul, 8 div, 9 pow``: ``a b -> a op b``
10   CALL1 f   unary function ``UNARY[f]`` of the top
11   CALL2 f   binary function ``BINARY[f]`` (``atan2(a, b)``, ``min``, ``max``) of ``a b``
12   MASK t    ``a -> lanes[t][lane] != 0 ? a : 0`` (terms past a lane's sum bound)
===  ========  ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

OP_CONST, OP_LANES, OP_LOAD, OP_NEG = 1, 2, 3, 4
OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW = 5, 6, 7, 8, 9
OP_CALL1, OP_CALL2, OP_MASK = 10, 11, 12
BINARY_OPS = {"add": OP_ADD, "sub": OP_SUB, "mul": OP_MUL, "div": OP_DIV, "pow": OP_POW}
#: Function ids of CALL1 / CALL2 (the order is part of the file format).
UNARY = ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "abs", "sinh", "cosh", "atan", "asin", "acos",
         "log1p", "expm1", "erf", "sin2pi", "cos2pi")
BINARY = ("atan2", "min", "max")
#: Stack depth a reader must support (programs are refused beyond it).
MAX_STACK = 256


@dataclass(frozen=True)
class ResolvedProgram:
    """Postfix programs of a model's slow drift, for ``dim`` state components.

    Attributes
    ----------
    equations : ndarray, (n_eq, 4)
        ``offset, lanes, code_start, code_length`` per equation: components
        ``offset .. offset + lanes - 1`` of ``R`` are the program ``code[start : start + length]``.
    code : ndarray, (n_code, 2)
        ``(opcode, operand)`` rows.
    constants : ndarray, (n_const,)
    lanes : ndarray, (n_tables, dim)
        Per-lane tables (entries past an equation's ``lanes`` are 0).
    max_stack : int
        Largest stack depth any program reaches.
    """

    equations: np.ndarray
    code: np.ndarray
    constants: np.ndarray
    lanes: np.ndarray
    max_stack: int

    def arrays(self) -> list[tuple[str, np.ndarray]]:
        """The four arrays in the portable format's order (float64; integers are exact)."""
        return [(f"resolved.{k}", np.ascontiguousarray(getattr(self, k), dtype="<f8"))
                for k in ("equations", "code", "constants", "lanes")]

    def evaluate(self, x: np.ndarray) -> np.ndarray:
        """Reference interpreter in NumPy: ``x (n, dim) -> R (n, dim)`` (float64)."""
        x = np.asarray(x, dtype=np.float64)
        out = np.zeros_like(x)
        with np.errstate(all="ignore"):
            for off, n, start, length in self.equations.astype(np.int64):
                stack: list[Any] = []
                for op, arg in self.code[start:start + length].astype(np.int64):
                    if op == OP_CONST:
                        stack.append(self.constants[arg])
                    elif op == OP_LANES:
                        stack.append(self.lanes[arg, :n])
                    elif op == OP_LOAD:
                        stack.append(x[:, self.lanes[arg, :n].astype(np.int64)])
                    elif op == OP_NEG:
                        stack.append(-stack.pop())
                    elif op == OP_MASK:
                        stack.append(np.where(self.lanes[arg, :n] != 0, stack.pop(), 0.0))
                    elif op == OP_CALL1:
                        stack.append(_np_fn(UNARY[arg])(stack.pop()))
                    else:
                        b, a = stack.pop(), stack.pop()
                        if op == OP_CALL2:
                            stack.append(_np_fn(BINARY[arg])(a, b))
                        else:
                            stack.append({OP_ADD: np.add, OP_SUB: np.subtract, OP_MUL: np.multiply,
                                          OP_DIV: np.divide, OP_POW: np.power}[op](a, b))
                out[:, off:off + n] = np.broadcast_to(stack.pop(), (x.shape[0], n))
        return out


def _np_fn(fn: str):
    from ..models._evaluate import _np_function

    return _np_function(fn)


class _Compiler:
    def __init__(self, model: Any, values: Mapping[str, float], eps: float | None) -> None:
        self.model, self.values, self.eps = model, values, eps
        self.ints = {k: int(values[k]) for k in model.parsed().integer_params}
        self.layout = model._layout(values)
        self.dim = model.dims(values)[0]
        self.constants: list[float] = []
        self.tables: list[np.ndarray] = []
        self._const_ix: dict[bytes, int] = {}
        self._table_ix: dict[bytes, int] = {}

    # -- pools
    def const(self, v: float) -> list[tuple[int, int]]:
        key = np.float64(v).tobytes()
        if key not in self._const_ix:
            self._const_ix[key] = len(self.constants)
            self.constants.append(float(v))
        return [(OP_CONST, self._const_ix[key])]

    def table(self, values: np.ndarray) -> int:
        row = np.zeros(self.dim)
        row[:values.size] = values
        key = row.tobytes()
        if key not in self._table_ix:
            self._table_ix[key] = len(self.tables)
            self.tables.append(row)
        return self._table_ix[key]

    def index(self, i: Any, env: Mapping[str, np.ndarray], n: int) -> np.ndarray:
        from ..models._ir import eval_index

        return np.broadcast_to(np.asarray(eval_index(i, env, self.ints, self.model.name), np.int64), (n,))

    # -- expressions: a float (folded as the evaluator folds) or code
    def value(self, e: Any, env: Mapping[str, np.ndarray], n: int) -> float | list[tuple[int, int]]:
        from ..models import _ir
        from ..models._evaluate import _ARITH

        if isinstance(e, _ir.Num):
            return float(e.value)
        if isinstance(e, _ir.Param):
            return float(self.values[e.name])
        if isinstance(e, _ir.Const):
            return float(e.value)
        if isinstance(e, _ir.Eps):
            if self.eps is None:
                raise ValueError(f"model {self.model.name!r} uses eps and has no default_eps")
            return float(self.eps)
        if isinstance(e, _ir.IdxVar):
            return [(OP_LANES, self.table(env[e.name].astype(np.float64)))]
        if isinstance(e, _ir.State):
            if e.kind != "slow":
                raise ValueError(f"the resolved model {self.model.name!r} reads fast variables")
            off, size = self.layout[(e.kind, e.name)]
            cols = np.full(n, off) if e.index is None else off + np.mod(self.index(e.index, env, n), size)
            return [(OP_LOAD, self.table(cols.astype(np.float64)))]
        if isinstance(e, _ir.Unary):  # 'neg'
            a = self.value(e.arg, env, n)
            return -a if isinstance(a, float) else a + [(OP_NEG, 0)]
        if isinstance(e, _ir.Binary):
            return self.apply(_ARITH[e.op], (BINARY_OPS[e.op], 0),
                              [self.value(e.left, env, n), self.value(e.right, env, n)])
        if isinstance(e, _ir.Call):
            args = [self.value(a, env, n) for a in e.args]
            ins = (OP_CALL1, UNARY.index(e.fn)) if len(args) == 1 else (OP_CALL2, BINARY.index(e.fn))
            return self.apply(_np_fn(e.fn), ins, args)
        if isinstance(e, _ir.Sum):
            return self.sum(e, env, n)
        raise TypeError(f"unknown IR node {e!r}")  # pragma: no cover

    def apply(self, fn: Any, ins: tuple[int, int], args: list[Any]) -> float | list[tuple[int, int]]:
        if all(isinstance(a, float) for a in args):
            with np.errstate(all="ignore"):
                return float(fn(*(np.float64(a) for a in args)))
        code: list[tuple[int, int]] = []
        for a in args:
            code += self.const(a) if isinstance(a, float) else a
        return code + [ins]

    def sum(self, e: Any, env: Mapping[str, np.ndarray], n: int) -> float | list[tuple[int, int]]:
        lo, hi = self.index(e.lo, env, n), self.index(e.hi, env, n)
        count = np.maximum(hi - lo, 0)
        L = int(count.max()) if count.size else 0
        if L == 0:
            return 0.0
        first = self.value(e.body, {**env, e.var: lo}, n)
        if isinstance(first, float):  # a constant body: count * body per lane, as the evaluator
            return [(OP_LANES, self.table((count * first).astype(np.float64)))]
        code: list[tuple[int, int]] = []
        for m in range(L):
            term = first if m == 0 else self.value(e.body, {**env, e.var: lo + m}, n)
            assert not isinstance(term, float)
            if not np.all(m < count):
                term = term + [(OP_MASK, self.table((m < count).astype(np.float64)))]
            code += term if m == 0 else term + [(OP_ADD, 0)]
        return code


def _depth(code: list[tuple[int, int]]) -> int:
    d = top = 0
    for op, _ in code:
        d += 1 if op in (OP_CONST, OP_LANES, OP_LOAD) else (-1 if op in (*BINARY_OPS.values(), OP_CALL2) else 0)
        top = max(top, d)
    if d != 1:  # pragma: no cover - the compiler's own invariant
        raise AssertionError(f"program leaves {d} values on the stack")
    return top


def compile_resolved(model: Any, params: Mapping[str, float] | None = None,
                     eps: float | None = None) -> ResolvedProgram:
    """Lower ``model``'s slow drift ``f(x)`` (slow variables only) to a :class:`ResolvedProgram`.

    Parameters
    ----------
    model : multiscale.Model
        Without fast variables.
    params : mapping, optional
        Parameter values (defaults otherwise); they are folded into the program.
    eps : float, optional
        For models that name ``eps`` (default: the model's ``default_eps``).

    Raises
    ------
    ValueError
        For a model with fast variables, or a program deeper than :data:`MAX_STACK`.
    """
    values = model.resolve_params(params)
    if model.dims(values)[1]:
        raise ValueError(f"the resolved model {model.name!r} has fast variables; it must have slow ones only")
    c = _Compiler(model, values, model.default_eps if eps is None else eps)
    eqs, code, depth = [], [], 1
    for eq in model.parsed().slow_drift:
        off, size = c.layout[(eq.variable.kind, eq.variable.name)]
        n = 1 if size is None else size
        env = {} if size is None else {eq.index: np.arange(n, dtype=np.int64)}
        prog = c.value(eq.expr, env, n)
        prog = c.const(prog) if isinstance(prog, float) else prog
        depth = max(depth, _depth(prog))
        eqs.append((off, n, len(code), len(prog)))
        code += prog
    if depth > MAX_STACK:
        raise ValueError(f"the resolved model {model.name!r} needs a stack of {depth} (> {MAX_STACK}): "
                         "split its sums")
    return ResolvedProgram(np.asarray(eqs, np.float64).reshape(-1, 4), np.asarray(code, np.float64).reshape(-1, 2),
                           np.asarray(c.constants, np.float64),
                           np.asarray(c.tables, np.float64).reshape(-1, c.dim), depth)
