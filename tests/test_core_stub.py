"""The typed stub ``multiscale/_core.pyi`` and the compiled module agree.

Every public name of ``multiscale._core`` is in the stub and vice versa, and each function's
parameters (names, order, which have defaults) in the stub are those pybind11 reports in the
first line of the function's docstring, ``name(a: type, b: type = default) -> ret`` (pybind11
functions have no ``inspect.signature``). The stub is read from the installed package, so a
stub left out of the wheel fails here too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import multiscale
from multiscale import _core

STUB = Path(multiscale.__file__).with_name("_core.pyi")

Params = list[tuple[str, bool]]  # (name, has a default)


def _split_top(text: str) -> list[str]:
    """Split at commas outside brackets and quotes."""
    parts, depth, quote, cur = [], 0, "", []
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        parts.append("".join(cur))
    return [p.strip() for p in parts]


def doc_params(name: str, doc: str | None) -> Params:
    """Parameters from pybind11's signature line ``name(a: T, b: T = 0) -> R``."""
    assert doc, f"_core.{name} has no docstring"
    line = doc.splitlines()[0]
    assert line.startswith(name + "("), f"_core.{name}: unexpected signature line {line!r}"
    depth, end = 0, None
    for i in range(len(name), len(line)):
        depth += {"(": 1, ")": -1}.get(line[i], 0)
        if depth == 0:
            end = i
            break
    assert end is not None, f"_core.{name}: unbalanced signature line {line!r}"
    out = []
    for item in _split_top(line[len(name) + 1:end]):
        pname = item.split(":", 1)[0].strip()
        out.append((pname, " = " in item.split(":", 1)[1] if ":" in item else "=" in item))
    return out


def stub_api(source: str) -> tuple[dict[str, Params], set[str]]:
    """(public functions -> parameters, other public names) of a stub's source."""
    funcs: dict[str, Params] = {}
    other: set[str] = set()
    for node in ast.parse(source).body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            assert not (args.vararg or args.kwarg or args.kwonlyargs), f"{node.name}: unexpected *args/**kw"
            pos = args.posonlyargs + args.args
            n_plain = len(pos) - len(args.defaults)
            funcs[node.name] = [(a.arg, i >= n_plain) for i, a in enumerate(pos)]
        elif isinstance(node, ast.ClassDef):
            other.add(node.name)
        elif isinstance(node, ast.Assign):
            other.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            other.add(node.target.id)
    return ({k: v for k, v in funcs.items() if not k.startswith("_")},
            {k for k in other if not k.startswith("_")})


def mismatches(source: str, module) -> list[str]:
    """Every disagreement between a stub's source and a compiled module, in words."""
    funcs, other = stub_api(source)
    public = {k for k in vars(module) if not k.startswith("_")}
    problems = [f"{k}: in the module, not in the stub" for k in sorted(public - funcs.keys() - other)]
    problems += [f"{k}: in the stub, not in the module" for k in sorted((funcs.keys() | other) - public)]
    for name in sorted(funcs.keys() & public):
        obj = getattr(module, name)
        if not callable(obj):
            problems.append(f"{name}: a function in the stub, not callable in the module")
            continue
        got = doc_params(name, obj.__doc__)
        if got != funcs[name]:
            problems.append(f"{name}: parameters (name, has default) {funcs[name]} in the stub, {got} in the module")
    return problems


def test_stub_is_installed_with_the_package():
    assert STUB.is_file(), f"{STUB} is missing: the stub must ship with the package"
    assert STUB.with_name("py.typed").is_file(), "the py.typed marker must ship with the package"


def test_stub_matches_compiled_module():
    assert mismatches(STUB.read_text(), _core) == []


def test_every_function_names_and_documents_its_arguments():
    for name in sorted(k for k in vars(_core) if not k.startswith("_")):
        fn = getattr(_core, name)
        params = doc_params(name, fn.__doc__)
        unnamed = [p for p, _ in params if p.startswith("arg") and p[3:].isdigit()]
        assert not unnamed, f"_core.{name}: arguments without py::arg names: {unnamed}"
        body = fn.__doc__.split("\n", 1)[1].strip() if "\n" in fn.__doc__ else ""
        assert len(body) > 20, f"_core.{name} has no docstring beyond its signature"


@pytest.mark.parametrize("edit, expect", [
    # a parameter renamed, dropped, given a default, or a function left out: each is caught
    (lambda s: s.replace("path_ids: npt", "ids: npt", 1), "passage: parameters"),
    (lambda s: s.replace("    device: int,\n) -> _PassageResult", ") -> _PassageResult", 1), "passage: parameters"),
    (lambda s: s.replace("stream: int = 0", "stream: int", 1), "normals: parameters"),
    (lambda s: s.replace("def exact_sum(", "def _exact_sum(", 1), "exact_sum: in the module, not in the stub"),
    (lambda s: s + "\ndef no_such_kernel() -> None: ...\n", "no_such_kernel: in the stub, not in the module"),
])
def test_the_check_can_fail(edit, expect):
    source = STUB.read_text()
    edited = edit(source)
    assert edited != source, "the edit did not apply: update this test with the stub"
    assert any(expect in p for p in mismatches(edited, _core)), mismatches(edited, _core)


def test_signature_line_parser():
    doc = "f(a: typing.Annotated[numpy.typing.ArrayLike, numpy.float64], b: int = 0, c: dict[str, int] = {}) -> None\n\nx"
    assert doc_params("f", doc) == [("a", False), ("b", True), ("c", True)]
    assert doc_params("g", "g() -> dict\n\nx") == []
