"""C++ for a parsed user model: a model struct with the catalogue's interface
(``csrc/include/multiscale/models/common.h``), compiled by :mod:`._jit`.

Arithmetic is emitted in the IR's own order, fully parenthesised, so a model written like a
catalogue model compiles to the same operations (and the same bits). Subexpressions of
parameters only are evaluated once, in double, when the model is built from its parameters
(as the catalogue does, e.g. Lorenz-96's h c / b); small integer powers are expanded into
products left to right (x^3 -> (x*x)*x), as the catalogue writes them.
"""
from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ._ir import (Binary, Call, Const, Eps, Equation, IdxBin, IdxNum, IdxParam, IdxVar, Num, Param,
                  ParsedModel, State, Sum, Unary)
from ._model import Model

_FN = {"sin": "sin", "cos": "cos", "tan": "tan", "exp": "exp", "log": "log", "sqrt": "sqrt", "tanh": "tanh",
       "sinh": "sinh", "cosh": "cosh", "atan": "atan", "asin": "asin", "acos": "acos", "log1p": "log1p",
       "expm1": "expm1", "erf": "erf", "sin2pi": "sin_2pi", "cos2pi": "cos_2pi", "abs": "fabs", "min": "fmin", "max": "fmax", "atan2": "atan2"}
_OPS = {"add": "+", "sub": "-", "mul": "*", "div": "/"}


def _lit(v: float) -> str:
    return repr(float(v))


def _param_only(e: Any) -> bool:
    if isinstance(e, (Num, Param, Const, Eps)):
        return True
    if isinstance(e, Unary):
        return _param_only(e.arg)
    if isinstance(e, Binary):
        return _param_only(e.left) and _param_only(e.right)
    if isinstance(e, Call):
        return all(_param_only(a) for a in e.args)
    return False


class _Gen:
    def __init__(self, model: Model, parsed: ParsedModel) -> None:
        self.model = model
        self.p = parsed
        self.params = list(model.param_names)
        self.hoisted: list[str] = []     # double expressions of the hoisted members h0, h1, ...
        self.hoist_ids: dict[str, int] = {}
        self.sizes = {v.name: v.size for v in parsed.slow + parsed.fast}
        # While generating the interior of a ring loop: (loop variable, its length's C++ text);
        # accesses var + c to variables of that length then need no wrap (offsets collected).
        self.interior: tuple[str, str] | None = None
        self.offsets: list[int] = []
        # Models of scalars only get literal offsets: compile-time indices let the CPU lane
        # loop vectorise across paths as for the catalogue's fixed-size models.
        self.literal: dict[str, int] = {}
        if all(not v.is_vector for v in parsed.slow + parsed.fast):
            for group in (parsed.slow, parsed.fast):
                for i, v in enumerate(group):
                    self.literal[v.name] = i

    # ----- double (host) expressions of parameters only, for from_params ------------------------
    def dexpr(self, e: Any) -> str:
        if isinstance(e, Num):
            return _lit(e.value)
        if isinstance(e, Param):
            return f"p[{self.params.index(e.name)}]"
        if isinstance(e, Const):
            return _lit(e.value)
        if isinstance(e, Eps):
            return "eps"
        if isinstance(e, Unary):
            return f"(-{self.dexpr(e.arg)})"
        if isinstance(e, Binary):
            if e.op == "pow":
                return self._pow(e, self.dexpr, "double", "std::pow")
            return f"({self.dexpr(e.left)} {_OPS[e.op]} {self.dexpr(e.right)})"
        if isinstance(e, Call):
            fn = _FN[e.fn] if e.fn in ("sin2pi", "cos2pi") else "std::" + _FN[e.fn]
            return f"{fn}({', '.join(self.dexpr(a) for a in e.args)})"
        raise TypeError(type(e).__name__)

    def hoist(self, e: Any) -> str:
        d = self.dexpr(e)
        if d not in self.hoist_ids:
            self.hoist_ids[d] = len(self.hoisted)
            self.hoisted.append(d)
        return f"h{self.hoist_ids[d]}"

    # ----- Real (device) expressions ----------------------------------------------------------
    def idx(self, i: Any) -> str:
        if isinstance(i, IdxNum):
            return str(int(i.value))
        if isinstance(i, IdxVar):
            return f"v_{i.name}"
        if isinstance(i, IdxParam):
            return f"i_{i.name}"
        if isinstance(i, IdxBin):
            a, b = self.idx(i.left), self.idx(i.right)
            if i.op == "floordiv":
                return f"floordiv({a}, {b})"
            return f"({a} {_OPS[i.op]} {b})"
        raise TypeError(type(i).__name__)

    def state(self, s: State) -> str:
        arr = "x" if s.kind == "slow" else "y"
        if s.index is not None and self.interior is not None:
            var, length = self.interior
            c = _affine(s.index, var)
            if c is not None and self.idx(self.sizes[s.name]) == length:
                self.offsets.append(c)
                return f"{arr}[off_{s.name} + {self.idx(s.index)}]"
        if s.index is None:
            return f"{arr}[{self.literal[s.name]}]" if s.name in self.literal else f"{arr}[off_{s.name}]"
        return f"{arr}[off_{s.name} + wrap({self.idx(s.index)}, len_{s.name})]"

    def rexpr(self, e: Any) -> str:
        if isinstance(e, Param):
            return f"p_{e.name}"
        if _param_only(e):
            if isinstance(e, Num):
                return f"Real({_lit(e.value)})"
            return self.hoist(e)
        if isinstance(e, State):
            return self.state(e)
        if isinstance(e, IdxVar):
            return f"Real(v_{e.name})"
        if isinstance(e, Unary):
            return f"(-{self.rexpr(e.arg)})"
        if isinstance(e, Binary):
            if e.op == "pow":
                return self._pow(e, self.rexpr, "Real", "pow")
            return f"({self.rexpr(e.left)} {_OPS[e.op]} {self.rexpr(e.right)})"
        if isinstance(e, Call):
            return f"{_FN[e.fn]}({', '.join(self.rexpr(a) for a in e.args)})"
        if isinstance(e, Sum):
            v = f"v_{e.var}"
            return (f"[&] {{ Real s_ = Real(0); for (int {v} = {self.idx(e.lo)}; {v} < {self.idx(e.hi)}; "
                    f"++{v}) s_ += {self.rexpr(e.body)}; return s_; }}()")
        raise TypeError(type(e).__name__)

    @staticmethod
    def _pow(e: Binary, sub, real: str, fn: str) -> str:
        r = e.right
        if isinstance(r, Num) and float(r.value).is_integer() and -8 <= r.value <= 8:
            n = int(r.value)
            if n == 0:
                return f"{real}(1)"
            base = sub(e.left)
            prod = base
            for _ in range(abs(n) - 1):
                prod = f"({prod} * {base})"
            return prod if n > 0 else f"({real}(1) / {prod})"
        return f"{fn}({sub(e.left)}, {sub(e.right)})"

    def equations(self, eqs: tuple[Equation, ...], out: str) -> str:
        lines = []
        for q in eqs:
            v = q.variable
            # The comment names the user's field and expression: compile errors are mapped back
            # through it (:func:`._jit._first_errors`).
            lines.append(f"    {MODEL_COMMENT}{_comment(q.label)}: {_comment(q.text)}")
            if v.is_vector:
                k = f"v_{q.index}"
                wrapped = self.rexpr(q.expr)
                self.interior, self.offsets = (q.index, self.idx(v.size)), []
                inner = self.rexpr(q.expr)
                self.interior = None
                at = f"{out}[off_{v.name} + {k}]"
                if inner == wrapped:
                    lines.append(f"    for (int {k} = 0; {k} < len_{v.name}; ++{k}) {at} = {wrapped};")
                else:
                    # Ring ends with periodic wrapping, the interior with plain affine indices
                    # (no branches: the loop vectorises over components, as the catalogue's).
                    lo, hi = max(0, -min(self.offsets)), max(0, max(self.offsets))
                    n = f"len_{v.name}"
                    lines.append(f"    {{\n      const int lo_ = {lo} < {n} ? {lo} : {n};\n"
                                 f"      const int hi_ = {n} - {hi} > lo_ ? {n} - {hi} : lo_;\n"
                                 f"      for (int {k} = 0; {k} < lo_; ++{k}) {at} = {wrapped};\n"
                                 f"      for (int {k} = lo_; {k} < hi_; ++{k}) {at} = {inner};\n"
                                 f"      for (int {k} = hi_; {k} < {n}; ++{k}) {at} = {wrapped};\n    }}")
            else:
                at = self.literal.get(v.name, f"off_{v.name}")
                lines.append(f"    {out}[{at}] = {self.rexpr(q.expr)};")
        return "\n".join(lines)


#: Marks the line naming the user's expression above each generated equation.
MODEL_COMMENT = "// model "


def _comment(text: str) -> str:
    """Text safe inside a one-line comment (no line breaks or backslash continuations)."""
    return "".join(ch if " " <= ch <= "~" and ch != "\\" else "?" for ch in text)


def _affine(i: Any, var: str) -> int | None:
    """c when the index is ``var + c`` (or ``var - c``, ``var``), else None."""
    if isinstance(i, IdxVar) and i.name == var:
        return 0
    if (isinstance(i, IdxBin) and i.op in ("add", "sub") and isinstance(i.left, IdxVar) and i.left.name == var
            and isinstance(i.right, IdxNum)):
        return int(i.right.value) * (1 if i.op == "add" else -1)
    return None


def _uses_fast(e: Any) -> bool:
    if isinstance(e, State):
        return e.kind == "fast"
    if isinstance(e, Unary):
        return _uses_fast(e.arg)
    if isinstance(e, Binary):
        return _uses_fast(e.left) or _uses_fast(e.right)
    if isinstance(e, Call):
        return any(_uses_fast(a) for a in e.args)
    if isinstance(e, Sum):
        return _uses_fast(e.body)
    return False


def ou_form(parsed: ParsedModel) -> tuple[Any, list[Any]] | None:
    """(theta, [mu_j]) when every fast drift is -theta (y_j - mu_j(x)) with one parameter-only
    theta and noise free of y, read off the IR's shape: ``-(y - m)``, ``-y``, ``m - y`` and
    ``-T*(y - m)``; None otherwise (then the fast step is Euler)."""
    if any(v.is_vector for v in parsed.fast) or not parsed.fast:
        return None
    if any(_uses_fast(q.expr) for q in parsed.fast_noise):
        return None
    theta, mus = None, []
    for q in parsed.fast_drift:
        y = q.variable.name

        def is_y(n: Any) -> bool:
            return isinstance(n, State) and n.kind == "fast" and n.name == y and n.index is None

        e, t, mu = q.expr, Num(1), None
        if isinstance(e, Unary) and isinstance(e.arg, Binary) and e.arg.op == "sub" and is_y(e.arg.left):
            mu = e.arg.right                                   # -(y - m)
        elif isinstance(e, Unary) and is_y(e.arg):
            mu = Num(0)                                        # -y
        elif isinstance(e, Binary) and e.op == "sub" and is_y(e.right):
            mu = e.left                                        # m - y
        elif isinstance(e, Binary) and e.op == "mul" and isinstance(e.right, Binary) and e.right.op == "sub":
            if isinstance(e.left, Unary) and _param_only(e.left.arg) and is_y(e.right.left):
                t, mu = e.left.arg, e.right.right              # -T*(y - m)
            elif _param_only(e.left) and is_y(e.right.right):
                t, mu = e.left, e.right.left                   # T*(m - y)
        if mu is None:
            return None
        if _uses_fast(mu) or (theta is not None and theta != t):
            return None
        theta = t
        mus.append(mu)
    return theta, mus


def dynamics_hash(model: Model) -> str:
    """SHA-256 of what the generated code depends on: not the description or the known facts
    (potential, fast density), so models differing only there share one compiled module."""
    d = model.to_dict()
    for k in ("description", "potential", "fast_invariant_density"):
        d.pop(k, None)
    return hashlib.sha256(json.dumps(d, sort_keys=True, default=str).encode()).hexdigest()


def struct_name(model: Model) -> str:
    return "UserModel_" + re.sub(r"\W", "_", model.name) + "_" + dynamics_hash(model)[:8]


def generate_header(model: Model) -> str:
    """The C++ header defining the model and ``MS_USER_MODEL_LIST`` (one entry, id 0)."""
    parsed = model.parsed()
    g = _Gen(model, parsed)
    bodies = {
        "slow_drift": g.equations(parsed.slow_drift, "f"),
        "slow_drift0": g.equations(parsed.slow_drift0, "f0"),
        "slow_noise": g.equations(parsed.slow_noise, "a"),
        "fast_drift": g.equations(parsed.fast_drift, "g"),
        "fast_noise": g.equations(parsed.fast_noise, "b"),
    }
    name = struct_name(model)
    scaling = {"averaging": "kAveraging", "homogenization": "kHomogenization", "none": "kNone"}[
        model.scaling.value]
    variables = list(parsed.slow) + list(parsed.fast)
    fixed = all(not v.is_vector for v in variables)
    nx = len(parsed.slow) if fixed else -1
    ny = len(parsed.fast) if fixed else -1
    ou = ou_form(parsed)
    ou_text = ""
    if ou is not None:
        theta, mus = ou
        t = "Real(1)" if isinstance(theta, Num) and theta.value == 1 else g.rexpr(theta)
        means = "\n".join(f"    mu[{j}] = {g.rexpr(m) if not (isinstance(m, Num) and m.value == 0) else 'Real(0)'};"
                          for j, m in enumerate(mus))
        ou_text = (f"  MS_INLINE Real ou_theta() const {{ return {t}; }}\n"
                   f"  template <class V, class W>\n  MS_INLINE void ou_mean(V x, W mu) const {{\n    (void)x;\n"
                   f"{means}\n  }}\n")
    noise = parsed.slow_noise + parsed.fast_noise
    noisy = ""
    if not fixed and noise and all(_param_only(q.expr) for q in noise):
        # Runtime-sized models with constant noise amplitudes: with all of them zero the kernels
        # draw no normals (as the catalogue's Lorenz-96 does); the paths are the same either way.
        # Not for fixed-size models: the branch would stop the SIMD lane loop vectorising.
        terms = " || ".join(f"{g.rexpr(q.expr)} != Real(0)" for q in noise)
        noisy = f"  MS_INLINE bool noisy() const {{ return {terms}; }}\n"
    ints = sorted(set(parsed.integer_params))
    members = [f"  Real p_{n};" for n in g.params] + [f"  int i_{n};" for n in ints]
    members += [f"  Real h{i};" for i in range(len(g.hoisted))]
    members += [f"  int off_{v.name}, len_{v.name};" for v in variables]
    build = [f"    m.p_{n} = Real(p[{i}]);" for i, n in enumerate(g.params)]
    build += [f"    m.i_{n} = static_cast<int>(p[{g.params.index(n)}]);" for n in ints]
    build += [f"    m.h{i} = Real({d});" for i, d in enumerate(g.hoisted)]
    for group, total in ((parsed.slow, "m.n_slow"), (parsed.fast, "m.n_fast")):
        build.append(f"    {total} = 0;")
        for v in group:
            size = "1" if v.size is None else g.idx(v.size).replace("i_", "m.i_")
            build.append(f"    m.off_{v.name} = {total}; m.len_{v.name} = {size}; {total} += {size};")
    methods = "\n".join(
        f"  template <class V, class W>\n  MS_INLINE void {fn}(V x, V y, W {out}) const {{\n    (void)x; (void)y;\n"
        f"{bodies[fn]}\n  }}"
        for fn, out in (("slow_drift", "f"), ("slow_drift0", "f0"), ("slow_noise", "a"), ("fast_drift", "g"),
                        ("fast_noise", "b")))
    text = f"""// Generated by multiscale from the user model {model.name!r} (dynamics hash {dynamics_hash(model)[:16]}).
#pragma once
namespace ms {{
template <class Real>
struct {name} {{
  static constexpr int kNX = {nx}, kNY = {ny}, kNumParams = {len(g.params)};
  static constexpr Scaling kScaling = Scaling::{scaling};
  static constexpr bool kOU = {"true" if ou is not None else "false"};
{chr(10).join(members)}
  int n_slow, n_fast;
  static {name} from_params(const double* p, double eps) {{
    (void)p; (void)eps;
    {name} m;
{chr(10).join(build)}
    return m;
  }}
  MS_INLINE int nx() const {{ return {nx if fixed else 'n_slow'}; }}
  MS_INLINE int ny() const {{ return {ny if fixed else 'n_fast'}; }}
  // Periodic index: one predictable comparison in the common in-range case.
  MS_INLINE static int wrap(int i, int n) {{
    return static_cast<unsigned>(i) < static_cast<unsigned>(n) ? i : ((i % n) + n) % n;
  }}
  MS_INLINE static int floordiv(int a, int b) {{
    return (a >= 0 && b > 0) ? a / b : a / b - ((a % b != 0) && ((a < 0) != (b < 0)));
  }}
{methods}
{ou_text}{noisy}}};
}}  // namespace ms
#define MS_USER_MODEL_LIST(X) X(0, ::ms::{name})
"""
    return text


def header_digest(model: Model) -> str:
    return hashlib.sha256(generate_header(model).encode()).hexdigest()
