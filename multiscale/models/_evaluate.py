"""Evaluating a model with NumPy or PyTorch: IR -> closures over precomputed integer index arrays.

:class:`ModelFunctions` is what :meth:`Model.numpy_functions` and :meth:`Model.torch_functions`
return: a slow, simple reference for the compiled kernels, and the differentiable form the
learning and validation layers use.
"""
from __future__ import annotations

import math
import operator
from typing import TYPE_CHECKING, Any, Callable, Mapping, Union

import numpy as np

from .._checks import positive_finite
from ._ir import Binary, Call, Const, Eps, Equation, Expr, IdxVar, Index, Num, Param, State, Sum, Unary, eval_index

if TYPE_CHECKING:
    from ._model import Model


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
        a = eval_index(i, env, self.ints, self.model.name)
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
        self.eps = None if eps is None else positive_finite("eps", eps)
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
