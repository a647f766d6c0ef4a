"""Each catalogue model's step, rebuilt independently in NumPy from the published equations.

The kernel's normals are a pure function of (seed, path, step, component), exposed as
``_core.normals``; with them, two Euler-Maruyama (or exact-OU) steps are recomputed here and
must agree to rounding. This pins the drift, noise, eps scaling and step indexing of every model.
Last, the layering of ``multiscale.models``: its modules import each other one way only.
"""
from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms
from multiscale import _core

SEED, N, DT = 11, 37, 1e-3
SQ2 = np.sqrt(2.0)


def _euler_fast(y, g, b, tau, z):
    return y + g * tau + b * np.sqrt(tau) * z


def _ou_fast(y, mu, b, tau, z):
    e = np.exp(-tau)
    return mu + e * (y - mu) + b * np.sqrt(-np.expm1(-2 * tau) / 2) * z


def step_reference(name, p, eps, x, y, z, exact_ou):
    """One step of the published SDE. x: (N, m), y: (N, n), z: (N, m + n)."""
    sdt = np.sqrt(DT)
    zx, zy = z[:, : x.shape[1]], z[:, x.shape[1]:]
    if name in ("fast_ou_linear", "fast_ou_quadratic"):
        coupling = p["c"] * (y if name == "fast_ou_linear" else y**2)
        x1 = x + (x - x**3 + coupling) * DT + p["sigma"] * sdt * zx
        tau = DT / eps
        y1 = _ou_fast(y, x, SQ2, tau, zy) if exact_ou else _euler_fast(y, -(y - x), SQ2, tau, zy)
        return x1, y1
    if name == "tilted_double_well":
        x1 = x + (p["a0"] - x + p["lam"] * y) * DT + SQ2 * sdt * zx
        y1 = _euler_fast(y, -(y**3 - y - p["lam"] * x), SQ2, DT / eps, zy)
        return x1, y1
    if name.startswith("periodic_potential"):
        dV = x if name.endswith("quadratic") else x**3 - x
        drift = -dV + 2 * np.pi * p["A"] / eps * np.sin(2 * np.pi * x / eps)
        return x + drift * DT + np.sqrt(2 * p["sigma"]) * sdt * zx, y
    if name == "fast_ou_noise":
        x1 = x + (-x - x**3 + np.sqrt(1 + x**2) * y / eps) * DT
        tau = DT / eps**2
        y1 = _ou_fast(y, 0.0, SQ2, tau, zy) if exact_ou else _euler_fast(y, -y, SQ2, tau, zy)
        return x1, y1
    if name == "double_well":
        return x + (x - x**3) * DT + p["sigma"] * sdt * zx, y
    if name == "ornstein_uhlenbeck":
        return x - p["theta"] * x * DT + np.sqrt(2 * p["D"]) * sdt * zx, y
    if name == "lorenz96":
        K, J = int(p["K"]), int(p["J"])
        h, b, c, F = p["h"], p["b"], p["c"], p["F"]
        Y = y.reshape(-1, K, J)
        fx = (-np.roll(x, 1, 1) * (np.roll(x, 2, 1) - np.roll(x, -1, 1)) - x + F
              - h * c / b * Y.sum(axis=2))
        fy = (-c * b * np.roll(y, -1, 1) * (np.roll(y, -2, 1) - np.roll(y, 1, 1)) - c * y
              + h * c / b * np.repeat(x, J, axis=1))
        return (x + fx * DT + p["sigma_x"] * sdt * zx, y + fy * DT + p["sigma_y"] * sdt * zy)
    raise AssertionError(name)


CASES = [
    ("fast_ou_linear", {"c": 0.7, "sigma": 0.9}, 0.02, True),
    ("fast_ou_linear", {"c": 0.7, "sigma": 0.9}, 0.02, False),
    ("fast_ou_quadratic", {"c": 0.3, "sigma": 1.1}, 0.01, True),
    ("fast_ou_quadratic", {"c": 0.3, "sigma": 1.1}, 0.01, False),
    ("tilted_double_well", {"a0": 0.2, "lam": 1.3}, 0.05, False),
    ("periodic_potential_quadratic", {"A": 0.8, "sigma": 0.4}, 0.2, False),
    ("periodic_potential_quartic", {"A": 1.0, "sigma": 0.5}, 0.1, False),
    ("fast_ou_noise", {}, 0.1, True),
    ("fast_ou_noise", {}, 0.1, False),
    ("double_well", {"sigma": 0.45}, None, False),
    ("ornstein_uhlenbeck", {"theta": 1.7, "D": 0.6}, None, False),
    ("lorenz96", {"K": 5, "J": 4, "h": 1.0, "b": 10.0, "c": 10.0, "F": 20.0,
                  "sigma_x": 0.3, "sigma_y": 0.2}, None, False),
    ("lorenz96", {"K": 4, "J": 3, "h": 0.5, "b": 5.0, "c": 4.0, "F": 8.0,
                  "sigma_x": 0.0, "sigma_y": 0.0}, None, False),
]


@pytest.mark.parametrize("name,params,eps,exact_ou", CASES)
def test_two_steps_match_published_equations(name, params, eps, exact_ou):
    info = ms.get_model(name)
    p = info.resolve_params(params)
    m, n = info.dims(p)
    rng = np.random.default_rng(3)
    x0 = rng.normal(0.0, 1.5, (N, m)) + (p.get("F", 0.0) if name == "lorenz96" else 0.0)
    y0 = rng.normal(0.0, 1.0, (N, n))
    fast_step = ms.FastStep.EXACT_OU if exact_ou else ms.FastStep.EULER
    if not info.exact_ou:
        fast_step = ms.FastStep.AUTO
    ds = ms.simulate(name, params=params, eps=eps, x0=x0, y0=y0 if n else None, dt=DT,
                     t_end=2 * DT, n_paths=N, seed=SEED, save_every=1, fast_step=fast_step)
    traj = ds["trajectory"].values
    x, y = x0, y0
    for step in range(2):
        z = _core.normals(SEED, 0, N, step, m + n, False)
        noisy = not (name == "lorenz96" and p["sigma_x"] == 0 and p["sigma_y"] == 0)
        x, y = step_reference(name, p, eps if eps is not None else 1.0, x, y, z if noisy else 0 * z,
                              exact_ou and info.exact_ou)
        got = traj[:, step + 1, :]
        np.testing.assert_allclose(got[:, :m], x, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got[:, m:], y, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("exact_ou", [True, False])
def test_float32_step_matches_reference(exact_ou):
    """Float32 kernels draw their own normals (4 per Philox block); with those, the step
    agrees with the float64 reference formula to single-precision rounding."""
    p = {"c": 0.5, "sigma": 1.0}
    x0 = np.float32(0.3) * np.ones((N, 1))
    y0 = np.float32(-0.2) * np.ones((N, 1))
    ds = ms.simulate("fast_ou_linear", eps=0.05, dt=DT, t_end=DT, n_paths=N, seed=SEED, x0=x0,
                     y0=y0, save_every=1, precision=ms.Precision.FLOAT32,
                     fast_step=ms.FastStep.EXACT_OU if exact_ou else ms.FastStep.EULER)
    assert ds["trajectory"].dtype == np.float32
    z = _core.normals(SEED, 0, N, 0, 2, True)
    assert z.dtype == np.float32 and np.all(np.abs(z) < 5.7)  # 23-bit uniforms bound |z|
    x1, y1 = step_reference("fast_ou_linear", p, 0.05, x0, y0, z.astype(float), exact_ou)
    got = ds["trajectory"].values[:, 1, :].astype(float)
    np.testing.assert_allclose(got[:, :1], x1, rtol=2e-6, atol=1e-6)
    np.testing.assert_allclose(got[:, 1:], y1, rtol=2e-6, atol=1e-6)


def test_catalogue_metadata_is_consistent_with_compiled_models():
    for info in ms.list_models():
        p = info.defaults
        m, n = info.dims()
        assert _core.model_dims(info.id, np.array([p[k] for k in info.param_names], float), 0.1) == (m, n)
        slow, fast = info.state_names()
        assert len(slow) == m and len(fast) == n
        x, y = info.default_initial()
        assert x.shape == (m,) and y.shape == (n,)
        assert info.name in info.summary() and info.description
        assert ms.get_model(info.name) is info
        for alias in info.aliases:
            assert ms.get_model(alias) is info


def test_language_form_of_each_entry_and_none_for_other_infos():
    for info in ms.list_models():
        assert isinstance(info.model, ms.Model) and info.model.name == info.name
    other = ms.ModelInfo("other", 0, "", "", ms.Scaling.NONE, (), False, None, "", False,
                         lambda p: (1, 0), lambda p: (["x"], []), lambda p: (np.zeros(1), np.zeros(0)))
    with pytest.raises(AttributeError, match="no definition in the model language"):
        other.model


# -- import layering of multiscale.models --------------------------------------------------------

def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST):
    """Import nodes that run (at module level or inside functions), not those under
    ``if TYPE_CHECKING:``, which exist for annotations only."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def import_graph(package_dir: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of the same package it imports (``__init__`` is the package).

    Relative imports are resolved against the package; ``from . import _x`` counts as importing
    ``_x``; imports of other packages are left out.
    """
    modules = {p.stem: p for p in package_dir.glob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}

    def local(dotted: str) -> str | None:
        return dotted[len(package) + 1:] if dotted.startswith(package + ".") else None
    for name, path in modules.items():
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:  # from mod import a, b: the submodules mod.a, mod.b where they are modules, else mod
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                mod = ".".join(p for p in (base, node.module) if p)
                subs = [f"{mod}.{a.name}" for a in node.names]
                targets = [t for t in subs if local(t) in modules]
                targets += [mod] if len(targets) < len(subs) else []
            for t in targets:
                if t == package:
                    graph[name].add("__init__")
                elif local(t) in modules:
                    graph[name].add(local(t))
            graph[name].discard(name)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        path.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state and (c := visit(m)) is not None:
                return c
        state[n] = 2
        path.pop()
        return None

    for n in sorted(graph):
        if n not in state and (c := visit(n)) is not None:
            return c
    return None


def test_models_package_imports_run_one_way():
    """leaf types <- IR <- parser <- model <- evaluation, code generation, JIT <- catalogue."""
    pkg = Path(ms.models.__file__).parent
    graph = import_graph(pkg, "multiscale.models")
    # the walk sees the imports (a walk that finds nothing would pass vacuously)
    assert {"_types", "_ir", "_parser", "_evaluate"} <= graph["_model"]
    assert {"_model", "_types", "_user"} <= graph["_catalog"]
    assert "_catalog_source" in graph["_catalog"]  # a function-level import counts
    assert "_model" not in graph["_evaluate"]  # TYPE_CHECKING-only imports do not
    assert graph["_types"] == set(), "_types is the leaf of multiscale.models"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle in multiscale.models: " + " -> ".join(cycle)


def test_the_cycle_check_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from ._a import A\n")
    (pkg / "_a.py").write_text("from ._b import B\nA = 1\n")
    (pkg / "_b.py").write_text("def f():\n    from . import _a\nB = 2\n")
    (pkg / "_c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ._a import A\n")
    graph = import_graph(pkg, "top.pkg")
    assert graph == {"__init__": {"_a"}, "_a": {"_b"}, "_b": {"_a"}, "_c": set()}
    assert find_cycle(graph) == ["_a", "_b", "_a"]
    assert find_cycle({"x": {"y"}, "y": set()}) is None
