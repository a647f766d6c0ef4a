"""The safe model language: catalogue equations written in it, NumPy/torch evaluation against
hand-written formulas, every rejection (message and caret), proof that parsing runs nothing,
and the TOML form."""
from __future__ import annotations

import builtins
import ast
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms
from multiscale.models import Model, ModelLanguageError, load_model_file
from multiscale.models._ir import Binary, Call, IdxBin, IdxNum, IdxParam, IdxVar, Num, Param, State, Sum, Unary

torch = pytest.importorskip("torch")

RNG = np.random.default_rng(3)


def problem1a() -> Model:
    return Model("p1a", slow={"x": "x - x^3 + c*y"}, fast={"y": "-(y - x)"},
                 fast_noise={"y": "sqrt(2)"}, slow_noise={"x": "sigma"},
                 params={"c": 0.5, "sigma": 1.0}, default_eps=0.01,
                 fast_invariant_density="exp(-(y - x)^2/2)")


def tilted() -> Model:
    return Model("tilted", slow={"x": "a0 - x + lam*y"}, fast={"y": "-(y^3 - y - lam*x)"},
                 slow_noise={"x": "sqrt(2)"}, fast_noise={"y": "sqrt(2)"},
                 params={"a0": 0.1, "lam": 1.5}, default_eps=0.03)


def problem4() -> Model:
    return Model("p4", slow={"x": "-x - x^3"}, slow_drift0={"x": "sqrt(1 + x^2)*y"},
                 fast={"y": "-y"}, fast_noise={"y": "sqrt(2)"}, scaling="homogenization",
                 default_eps=0.05)


K, J = 4, 3
L96 = dict(K=K, J=J, h=1.0, b=10.0, c=10.0, F=20.0, sigma_x=0.1, sigma_y=0.5)


def lorenz96() -> Model:
    return Model(
        "l96",
        slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F - (h*c/b)*sum(Y[k*J + j], j, 0, J)"},
        fast={"Y[i]": "-c*b*Y[i+1]*(Y[i+2] - Y[i-1]) - c*Y[i] + (h*c/b)*X[i//J]"},
        slow_noise={"X": "sigma_x"}, fast_noise={"Y[i]": "sigma_y"},
        params=L96, sizes={"X": "K", "Y": "K*J"}, scaling="none")


def l96_reference(x, y, p):
    B = x.shape[0]
    h, b, c, F = p["h"], p["b"], p["c"], p["F"]
    dx = (-np.roll(x, 1, 1) * (np.roll(x, 2, 1) - np.roll(x, -1, 1)) - x + F
          - h * c / b * y.reshape(B, K, J).sum(-1))
    dy = (-c * b * np.roll(y, -1, 1) * (np.roll(y, -2, 1) - np.roll(y, 1, 1)) - c * y
          + h * c / b * np.repeat(x, J, axis=1))
    return dx, dy


def both(model, x, y, method, **kw):
    """The NumPy result and the torch result (as NumPy) of one coefficient."""
    a = getattr(model.numpy_functions(**kw), method)(x, y)
    t = getattr(model.torch_functions(**kw), method)(torch.tensor(x), torch.tensor(y))
    return a, t.detach().numpy()


def states(m, n, B=6, scale=1.0):
    return RNG.normal(size=(B, m)) * scale, RNG.normal(size=(B, n)) * scale


# ---------------------------------------------------------------------------------------------
# Catalogue equations, evaluated


def test_problem1a_matches_formulas():
    m = problem1a()
    assert m.scaling is ms.Scaling.AVERAGING and m.dims() == (1, 1) and m.uses_eps
    x, y = states(1, 1)
    for method, want in [("slow_drift", x - x**3 + 0.5 * y), ("fast_drift", -(y - x)),
                         ("slow_noise", np.ones_like(x)), ("fast_noise", np.full_like(y, np.sqrt(2))),
                         ("slow_drift0", np.zeros_like(x))]:
        a, t = both(m, x, y, method)
        np.testing.assert_allclose(a, want, rtol=1e-14, atol=1e-14)
        np.testing.assert_allclose(t, a, rtol=1e-12, atol=1e-12)
    f = m.numpy_functions(params={"c": 2.0})
    np.testing.assert_allclose(f.slow_drift(x, y), x - x**3 + 2 * y, rtol=1e-14)
    dens = m.numpy_functions().fast_invariant_density(x, y)
    np.testing.assert_allclose(dens, np.exp(-(y - x)[:, 0] ** 2 / 2), rtol=1e-14)


def test_tilted_double_well_matches_formulas():
    m = tilted()
    x, y = states(1, 1)
    a, t = both(m, x, y, "slow_drift")
    np.testing.assert_allclose(a, 0.1 - x + 1.5 * y, rtol=1e-14)
    np.testing.assert_allclose(t, a, rtol=1e-12)
    a, t = both(m, x, y, "fast_drift")
    np.testing.assert_allclose(a, -(y**3 - y - 1.5 * x), rtol=1e-14)
    np.testing.assert_allclose(t, a, rtol=1e-12)


def test_problem4_homogenization():
    m = problem4()
    assert m.scaling is ms.Scaling.HOMOGENIZATION
    x, y = states(1, 1)
    a, t = both(m, x, y, "slow_drift0")
    np.testing.assert_allclose(a, np.sqrt(1 + x**2) * y, rtol=1e-14)
    np.testing.assert_allclose(t, a, rtol=1e-12)
    a, _ = both(m, x, y, "slow_drift")
    np.testing.assert_allclose(a, -x - x**3, rtol=1e-14)
    np.testing.assert_allclose(both(m, x, y, "slow_noise")[0], 0.0)  # default "0"


def test_lorenz96_ring_matches_np_roll():
    m = lorenz96()
    assert m.dims() == (K, K * J) and m.uses_eps is False
    assert m.state_names()[0] == ["X[0]", "X[1]", "X[2]", "X[3]"]
    assert set(m.parsed().integer_params) == {"K", "J"}
    x, y = states(K, K * J, scale=3.0)
    dx, dy = l96_reference(x, y, L96)
    a, t = both(m, x, y, "slow_drift")
    np.testing.assert_allclose(a, dx, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(t, a, rtol=1e-12, atol=1e-12)
    a, t = both(m, x, y, "fast_drift")
    np.testing.assert_allclose(a, dy, rtol=1e-13, atol=1e-12)
    np.testing.assert_allclose(t, a, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(both(m, x, y, "fast_noise")[1], 0.5)
    # another size: the index arithmetic follows the parameters
    m8 = m.numpy_functions(params={"K": 6, "J": 2})
    assert m8.dims == (6, 12)


def test_sum_with_varying_bounds_and_index_values():
    m = Model("cs", slow={"X[k]": "sum(X[j], j, 0, k+1) + 0.5*k + sum(1, j, k, 3)"}, sizes={"X": 5})
    x = RNG.normal(size=(3, 5))
    want = np.cumsum(x, axis=1) + 0.5 * np.arange(5) + np.maximum(3 - np.arange(5), 0)
    a, t = both(m, x, np.zeros((3, 0)), "slow_drift")
    np.testing.assert_allclose(a, want, rtol=1e-13)
    np.testing.assert_allclose(t, a, rtol=1e-12)


def test_eps_constants_and_functions():
    m = Model("pp", slow={"x": "-x + (2*pi*A/eps)*sin(2*pi*x/eps)"}, slow_noise={"x": "sqrt(2*sigma)"},
              params={"A": 1.0, "sigma": 0.5}, default_eps=0.2)
    assert m.scaling is ms.Scaling.NONE and m.uses_eps
    x = RNG.normal(size=(5, 1))
    for eps in (None, 0.1):
        e = 0.2 if eps is None else eps
        a, t = both(m, x, np.zeros((5, 0)), "slow_drift", eps=eps)
        np.testing.assert_allclose(a, -x + 2 * np.pi / e * np.sin(2 * np.pi * x / e), rtol=1e-13)
        np.testing.assert_allclose(t, a, rtol=1e-12)
    fns = "abs(x)+atan(x)+tanh(x)+sinh(x)+cosh(x)+exp(x)+log(1+x^2)+tan(x)+min(x, 0.3)+max(x, e)+pow(x, 2)" \
          "+atan2(x, 2)+erf(x)+log1p(x^2)+expm1(x)"
    f = Model("f", slow={"x": fns}).numpy_functions()
    x = np.array([[-0.7], [0.2], [1.1]])
    want = (abs(x) + np.arctan(x) + np.tanh(x) + np.sinh(x) + np.cosh(x) + np.exp(x) + np.log(1 + x**2)
            + np.tan(x) + np.minimum(x, 0.3) + np.maximum(x, np.e) + x**2 + np.arctan2(x, 2)
            + np.vectorize(__import__("math").erf)(x) + np.log1p(x**2) + np.expm1(x))
    np.testing.assert_allclose(f.slow_drift(x), want, rtol=1e-13)
    t = Model("f", slow={"x": fns}).torch_functions().slow_drift(torch.tensor(x))
    np.testing.assert_allclose(t.numpy(), want, rtol=1e-12)
    with pytest.raises(ValueError, match="uses eps: give eps="):
        Model("noeps", slow={"x": "eps*x"}).numpy_functions()


def test_dtype_follows_input():
    m = lorenz96()
    x, y = states(K, K * J)
    tf = m.torch_functions()
    out = tf.slow_drift(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    assert out.dtype == torch.float32 and out.shape == (6, K)
    assert m.numpy_functions().fast_drift(x.astype(np.float32), y.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match=r"x must have shape \(B, 4\)"):
        tf.slow_drift(torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 12, dtype=torch.float64))


# ---------------------------------------------------------------------------------------------
# Gradients


def test_torch_gradients_gradcheck():
    for model, (m, n) in [(lorenz96(), (K, K * J)), (problem1a(), (1, 1)), (problem4(), (1, 1))]:
        tf = model.torch_functions()
        x, y = states(m, n, B=3)
        xt = torch.tensor(x, requires_grad=True)
        yt = torch.tensor(y, requires_grad=True)
        for method in ("slow_drift", "slow_drift0", "fast_drift"):
            if method == "slow_drift0" and model.name != "p4":
                continue
            assert torch.autograd.gradcheck(getattr(tf, method), (xt, yt), eps=1e-6, atol=1e-7)


def test_torch_jacobian_matches_numpy_finite_differences():
    m = tilted()
    x, y = states(1, 1, B=4)
    fn = m.numpy_functions().fast_drift
    xt, yt = torch.tensor(x, requires_grad=True), torch.tensor(y, requires_grad=True)
    gx, gy = torch.autograd.grad(m.torch_functions().fast_drift(xt, yt).sum(), (xt, yt))
    h = 1e-6
    fd_x = (fn(x + h, y) - fn(x - h, y)) / (2 * h)
    fd_y = (fn(x, y + h) - fn(x, y - h)) / (2 * h)
    np.testing.assert_allclose(gx.numpy(), fd_x, rtol=1e-7, atol=1e-8)
    np.testing.assert_allclose(gy.numpy(), fd_y, rtol=1e-7, atol=1e-8)


def test_potential_gradient_is_minus_drift():
    m = Model("dw", slow={"x": "x - x^3"}, slow_noise={"x": "sigma"}, params={"sigma": 0.4},
              potential="x^4/4 - x^2/2")
    x = torch.linspace(-2, 2, 9, dtype=torch.float64).reshape(-1, 1).requires_grad_()
    tf = m.torch_functions()
    (g,) = torch.autograd.grad(tf.potential(x).sum(), x)
    torch.testing.assert_close(-g, tf.slow_drift(x).detach(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(m.numpy_functions().potential(x.detach().numpy()),
                               (x**4 / 4 - x**2 / 2).detach().numpy()[:, 0], rtol=1e-13)


# ---------------------------------------------------------------------------------------------
# IR


def test_ir_precedence_and_powers():
    ir = Model("t", slow={"x": "x^2*c"}, params={"c": 1.0}).parsed().slow_drift[0].expr
    x = State("slow", "x", None)
    assert ir == Binary("mul", Binary("pow", x, Num(2)), Param("c"))
    assert ir.left.span.source == "x^2" and ir.right.span.source == "c"

    def parse(text):
        return Model("t", slow={"x": text}).parsed().slow_drift[0].expr

    assert parse("x^-2") == Binary("pow", x, Num(-2))
    assert parse("pow(x, 3)") == parse("x**3") == Binary("pow", x, Num(3))
    assert parse("-2^2") == Unary("neg", Binary("pow", Num(2), Num(2)))  # math precedence: -(2^2)
    assert parse("x^2^3") == Binary("pow", x, Binary("pow", Num(2), Num(3)))
    assert parse("+sin(x)") == Call("sin", (x,))
    ir = lorenz96().parsed()
    y = ir.fast_drift[0].expr.right.right  # (h*c/b)*X[i//J]
    assert y == State("slow", "X", IdxBin("floordiv", IdxVar("i"), IdxParam("J")))
    s = ir.slow_drift[0].expr.right.right
    assert isinstance(s, Sum) and s.var == "j" and s.lo == IdxNum(0) and s.hi == IdxParam("J")
    assert [v.size for v in ir.fast] == [IdxBin("mul", IdxParam("K"), IdxParam("J"))]


# ---------------------------------------------------------------------------------------------
# Rejections: message and caret

def model_with(text: str) -> Model:
    return Model("t", slow={"x": "0", "X[k]": text}, fast={"y": "-y"}, fast_noise={"y": "1"},
                 params={"K": 3, "c": 1.0}, sizes={"X": "K"})


REJECT = [
    # (expression, fragment of the reason, offending text (its first occurrence) or None)
    ("__import__('os').system('echo hi')", "attribute access is not allowed", ".system"),
    ("().__class__", "attribute access is not allowed", ".__class__"),
    ("x.__class__.__bases__[0].__subclasses__()", "attribute access is not allowed", ".__subclasses__"),
    ("x.real", "attribute access is not allowed", ".real"),
    ("open('f')", "calls are limited to sin, cos, tan", "open"),
    ("eval('1')", "'eval' is not one of them", "eval"),
    ("bar(x)", "'bar' is not one of them", "bar"),
    ("lambda: 1", "lambda expressions are not allowed", "lambda: 1"),
    ("[1,2]", "lists are not allowed", "[1,2]"),
    ("(1, 2)", "tuples are not allowed", "(1, 2)"),
    ("{1: 2}", "dicts are not allowed", "{1: 2}"),
    ("[c for c in K]", "comprehensions are not allowed", "[c for c in K]"),
    ("x if y else 1", "conditional expressions", "x if y else 1"),
    ("y == 1", "comparisons are not allowed", "y == 1"),
    ("0 < x < 1", "comparisons are not allowed", "0 < x < 1"),
    ("x and y", "boolean operators", "x and y"),
    ("not x", "boolean operators", "not x"),
    ("~x", "operator '~' is not allowed", "~x"),
    ("x % 2", "operator '%' is not allowed", "%"),
    ("(x)//(y)", "operator '//' is not allowed", "//"),
    ("x @ y", "operator '@' is not allowed", "@"),
    ("(y := 1)", "assignment expressions (:=) are not allowed", "y := 1"),
    ("f'{x}'", "f-strings are not allowed", "f'{x}'"),
    ("'abc' + x", "string literals are not allowed", "'abc'"),
    ("b'a'", "byte strings are not allowed", "b'a'"),
    ("1j", "complex numbers are not allowed", "1j"),
    ("True", "True is not allowed", "True"),
    ("None", "None is not allowed", "None"),
    ("(yield x)", "yield is not allowed", "yield x"),
    ("1e999", "number 1e999 is not finite", "1e999"),
    ("x + foo", "unknown name 'foo'", "foo"),
    ("sinh(x) + cc", "unknown name 'cc'; did you mean 'c'?", "cc"),
    ("x ^ 2 + c ^ zz", "unknown name 'zz'", "zz"),  # carets mapped back through ^ -> **
    ("sin(x=1)", "keyword arguments are not allowed", "x=1"),
    ("sin(**c)", "argument unpacking (**) is not allowed", "**c"),
    ("sin(*c)", "argument unpacking (*) is not allowed", "*c"),
    ("sin(x, y)", "sin() takes 1 argument, got 2", "y"),
    ("atan2(x, y, 1)", "atan2() takes 2 arguments, got 3", "1"),
    ("sin", "function 'sin' must be called", "sin"),
    ("X[k+0.5]", "index 'k+0.5' is not an integer expression (0.5 is not an integer)", "0.5"),
    ("X[x]", "index 'x' is not an integer expression ('x' is a state", "x"),
    ("X[k/2]", "use // for integer division", "k/2"),
    ("X[pi]", "pi is not an integer", "pi"),
    ("X[q]", "unknown name 'q'", "q"),
    ("X[1:2]", "slices are not allowed", "1:2"),
    ("X[k][0]", "only a vector variable can be indexed", "X[k]"),
    ("x[0]", "'x' is a scalar variable and cannot be indexed", "x"),
    ("c[0]", "'c' is not a vector variable", "c"),
    ("X + 1", "vector variable 'X' needs an index", "X"),
    ("sum(X[j], k, 0, 3)", "summation variable 'k' is already in use", "k"),
    ("sum(X[j], x, 0, 3)", "'x' cannot be a summation variable", "x,"),
    ("sum(X[j], j, 0)", "sum() takes 4 arguments", "sum(X[j], j, 0)"),
    ("sum(X[j], j, 0, 0.5)", "index '0.5' is not an integer expression", "0.5"),
    ("x # comment", "comments are not allowed", "#"),
    ("x + \\\n 1", "backslashes are not allowed", "\\"),
    ("x + \u00e9", "is not allowed (expressions are plain ASCII)", "\u00e9"),
    ("x +", "syntax error", None),
    ("   ", "the expression is empty", None),
]


@pytest.mark.parametrize("text, reason, at", REJECT, ids=[r[0][:30] for r in REJECT])
def test_rejections_point_at_the_token(text, reason, at):
    with pytest.raises(ModelLanguageError) as ei:
        model_with(text)
    e = ei.value
    assert reason in e.reason, str(e)
    assert e.model == "t" and e.field == "slow drift of X[k]" and e.text == text
    assert str(e).startswith(f"model 't', slow drift of X[k]: {e.reason}")
    if at is not None:
        start = text.index(at)
        at = at.rstrip(",")
        assert (e.start, e.end) == (start, start + len(at)), str(e)
        *_, shown, carets = str(e).splitlines()
        assert carets == " " * (4 + start) + "^" * len(at), str(e)  # caret under the token
        assert shown == "    " + text.replace("\n", " ")


@pytest.mark.parametrize("text, reason, start", [
    ("x" * 3000, "3000 characters long; the limit is 2000", 2000),
    ("(" * 200 + "x" + ")" * 200, "brackets nested deeper than 50 levels", 50),
    ("-" * 200 + "x", "nested", None),
    ("-" * 5000 + "x", "characters long", 2000),
    ("sin(" * 60 + "x" + ")" * 60, "brackets nested deeper than 50 levels", 4 * 50 + 3),
    ("x" + "+x" * 60, "nested deeper than 50 levels", None),
])
def test_size_and_depth_limits(text, reason, start):
    with pytest.raises(ModelLanguageError, match="nested|characters") as ei:
        model_with(text)
    assert reason in ei.value.reason
    if start is not None:
        assert ei.value.start == start
    assert len(str(ei.value)) < 600  # a window of the text, not all of it


def test_parsing_runs_nothing():
    """While malicious text is parsed: no import, eval, exec, open, system, or compile to code."""
    calls: list[str] = []
    real_compile = builtins.compile

    def trap(name):
        def f(*a, **k):
            calls.append(name)
            raise AssertionError(f"{name} called")
        return f

    def ast_only_compile(source, filename, mode, flags=0, *a, **k):
        if not flags & ast.PyCF_ONLY_AST:
            calls.append("compile to code")
            raise AssertionError("compile to code")
        return real_compile(source, filename, mode, flags, *a, **k)

    texts = ["__import__('os').system('echo hi')", "open('f').read()", "eval('1')", "exec('x=1')",
             "().__class__.__bases__[0].__subclasses__()", "(lambda: __import__('os'))()",
             "[x for x in ().__class__.__mro__]", "breakpoint()", "globals()['os']", "x - x^3 + c*y"]
    patches = [(builtins, n, trap(n)) for n in ("__import__", "eval", "exec", "open", "breakpoint")]
    patches += [(builtins, "compile", ast_only_compile), (os, "system", trap("os.system")),
                (subprocess, "Popen", trap("Popen"))]
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    errors = []
    try:  # set by hand: monkeypatch itself imports while patching
        for obj, name, f in patches:
            setattr(obj, name, f)
        for text in texts:
            try:
                Model("t", slow={"x": text}, fast={"y": "-y"}, fast_noise={"y": "1"}, params={"c": 1.0})
                errors.append(None)
            except ModelLanguageError as e:
                errors.append(e)
    finally:
        for obj, name, f in saved:
            setattr(obj, name, f)
    assert calls == []
    assert all(isinstance(e, ModelLanguageError) for e in errors[:-1]) and errors[-1] is None


# ---------------------------------------------------------------------------------------------
# Model-level checks


@pytest.mark.parametrize("kw, match", [
    (dict(fast={"y": "-y"}), r"fast_noise of 'y' is missing"),
    (dict(slow_noise={"z": "1"}), r"slow_noise: 'z' is not a slow variable; slow variables are x"),
    (dict(slow_drift0={"x": "1"}), r"slow_drift0 is used only with scaling 'homogenization'"),
    (dict(params={"sin": 1.0}), r"parameter name 'sin' is invalid or reserved"),
    (dict(params={"c": float("nan")}), r"parameter c=nan must be a finite number"),
    (dict(slow={"x": "0", "X[k]": "0"}), r"vector variable X\[k\] needs a length in sizes"),
    (dict(sizes={"x": "3"}), r"sizes: 'x' is declared as a scalar"),
    (dict(slow={"X[k]": "0"}, sizes={"X": "K/2"}, params={"K": 4}), r"size 'K/2' is not an integer"),
    (dict(slow={"X[k]": "0"}, sizes={"X": "K"}, params={"K": 2.5}), r"K=2.5 .* must be an integer"),
    (dict(slow={"X[k]": "0"}, sizes={"X": "K - 4"}, params={"K": 4}), r"size of X = K - 4 is 0"),
    (dict(slow={"x[x]": "0"}), r"index variable 'x' of x\[x\] is already a variable name"),
    (dict(fast={"x": "0"}, fast_noise={"x": "1"}), r"'x' is declared both slow and fast"),
    (dict(potential="y"), r"potential: 'y' is a fast variable"),
    (dict(scaling="strong"), r"scaling 'strong' must be one of"),
    (dict(default_eps=-1.0), r"default_eps=-1.0 must be a finite number > 0"),
    (dict(slow={"x": ["x"]}), r"expected an expression string or a number"),
])
def test_model_level_errors(kw, match):
    base = dict(slow={"x": "-x"}, fast={"y": "-y"}, fast_noise={"y": "1"})
    base.update(kw)
    if "fast" in kw and "fast_noise" not in kw:
        base.pop("fast_noise")
    with pytest.raises(ModelLanguageError, match=match):
        Model("bad", **base)


def test_resolve_params_names_bad_entries():
    m = lorenz96()
    assert m.resolve_params({"F": 8})["F"] == 8.0
    with pytest.raises(ValueError, match="unknown parameter 'G' for model 'l96'"):
        m.resolve_params({"G": 1})
    with pytest.raises(ValueError, match="parameter J=2.5 of model 'l96' must be an integer"):
        m.dims({"J": 2.5})
    with pytest.raises(ValueError, match="parameter F='x' of model 'l96' is not a number"):
        m.resolve_params({"F": "x"})


def test_hash_equality_pickle():
    a, b = lorenz96(), lorenz96()
    assert a == b and hash(a) == hash(b) and a.source_hash() == b.source_hash()
    assert len(a.source_hash()) == 64
    c = Model.from_dict({**a.to_dict(), "params": {**L96, "F": 8.0}})
    assert c != a and c.source_hash() != a.source_hash()
    assert pickle.loads(pickle.dumps(a)) == a
    e = pickle.loads(pickle.dumps(pytest.raises(ModelLanguageError, model_with, "foo").value))
    assert e.start == 0 and "unknown name 'foo'" in str(e)
    # defaults are filled in, so equivalent spellings are one model
    assert Model("t", slow={"x": "-x"}) == Model("t", slow={"x": "-x"}, slow_noise={"x": "0"})


# ---------------------------------------------------------------------------------------------
# TOML


def test_toml_round_trip(tmp_path):
    for m in (lorenz96(), problem1a(), problem4()):
        path = tmp_path / f"{m.name}.toml"
        path.write_text(m.to_toml())
        back = load_model_file(path)
        assert back == m and back.source_hash() == m.source_hash()


def test_toml_hand_written(tmp_path):
    path = tmp_path / "m.toml"
    path.write_text('''
[model]
name = "ring"
scaling = "none"

[model.slow]
"X[k]" = "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"

[model.params]
K = 5
F = 8.0

[model.sizes]
X = "K"
''')
    m = ms.load_model_file(path)
    assert isinstance(m, ms.Model) and m.dims() == (5, 0)
    x = RNG.normal(size=(2, 5))
    want = -np.roll(x, 1, 1) * (np.roll(x, 2, 1) - np.roll(x, -1, 1)) - x + 8.0
    np.testing.assert_allclose(m.numpy_functions().slow_drift(x), want, rtol=1e-14)


@pytest.mark.parametrize("text, match", [
    ('[model]\nname = "a"\nfsat = 1\n[model.slow]\nx = "-x"\n',
     r"model\.fsat: unknown key; did you mean 'fast'\?"),
    ('[model]\nname = "a"\n[model.slow]\nx = "-x"\n[other]\nk = 1\n', r"other: unknown key"),
    ('[model]\nname = "a"\n[model.slow]\nx = "-x"\n[model.params]\nK = "four"\n',
     r"model\.params\.K: expected a number"),
    ('[model]\nname = "a"\n[model.slow]\nx = ["-x"]\n', r"model\.slow\.x: expected an expression string"),
    ('[model]\nname = "a"\n', r"model\.slow: missing"),
    ('[model]\nname = "a"\n[model.slow]\nx = "x.real"\n',
     r"model 'a', slow drift of x: attribute access is not allowed"),
    ('[model\n', r"model file .*m\.toml"),
])
def test_toml_errors_name_the_key(tmp_path, text, match):
    path = tmp_path / "m.toml"
    path.write_text(text)
    with pytest.raises(ModelLanguageError, match=match) as ei:
        load_model_file(path)
    assert str(ei.value).startswith(f"model file {str(path)!r}")


def test_missing_file(tmp_path):
    with pytest.raises(ModelLanguageError, match="does not exist"):
        load_model_file(tmp_path / "nope.toml")


def test_import_multiscale_does_not_import_torch():
    code = "import sys, multiscale as ms; ms.Model('a', slow={'x': '-x'}); assert 'torch' not in sys.modules"
    # from the package's parent: the repository root holds an uncompiled copy when installed
    parent = Path(ms.__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-c", code], check=True, cwd=parent, env=dict(os.environ, PYTHONPATH=str(parent)))
