"""docs/reference_problems.md is the project's own statement of its benchmark problems: every
catalogue model has a section there, every pointer to it resolves, nothing points to the
specification the problems were first written in (a file users do not have), and every exact
value the page quotes is what the package computes.

The value tables of the page have the header ``| quantity | exact value | computed by |``; the
last column is a Python expression evaluated after the page's first ```python block (its set-up
block). Every row must parse and agree with the printed value to 1e-6 relative (a value printed
as 0 to 1e-12 absolute).

docs/ lives in the repository, not in the installed package: without it these tests skip.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

import multiscale as ms

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "reference_problems.md"
pytestmark = pytest.mark.skipif(not DOC.is_file(), reason="docs/ not present (installed package without the repository)")

# The original specification's file name, assembled so that this file does not contain it.
OLD_SPEC = "REFERENCE_" + "PROBLEMS"
# Nothing in the project may point to (or read from) files outside it.
FORBIDDEN = (OLD_SPEC, "../shared", "/work/shared")
SEARCHED = ("multiscale", "examples", "data", "docs", "benchmarks", "tests", "README.md", "pyproject.toml",
            "CMakeLists.txt", "csrc", "cmake", ".ci")
TABLE_HEADER = "| quantity | exact value | computed by |"
REL_TOL = 1e-6
ZERO_TOL = 1e-12  # absolute, only for a value printed as 0 (zero by symmetry)


def _text() -> str:
    return DOC.read_text(encoding="utf-8")


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation other than - and _ removed,
    spaces to hyphens."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def _headings(text: str) -> list[str]:
    out, fence = [], False
    for line in text.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and re.match(r"#{1,6} ", line):
            out.append(line.lstrip("#").strip())
    return out


@dataclass(frozen=True)
class Row:
    section: str
    line: int
    quantity: str
    value: float
    expression: str

    @property
    def id(self) -> str:
        return f"L{self.line}:{self.quantity}"


def _rows(text: str) -> list[Row]:
    """The rows of every value table; a row that does not parse fails here, not silently."""
    rows: list[Row] = []
    section, in_table, fence = "", False, False
    for i, line in enumerate(text.splitlines(), 1):
        if line.startswith("```"):
            fence = not fence
            continue
        if fence:
            continue
        if re.match(r"#{1,6} ", line):
            section = line.lstrip("#").strip()
        if line.strip() == TABLE_HEADER:
            in_table = True
            continue
        if not in_table:
            continue
        if not line.startswith("|"):
            in_table = False
            continue
        if re.match(r"^\|[-| ]+\|$", line.strip()):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        assert len(cells) == 3, f"docs/reference_problems.md:{i}: a value row needs 3 cells: {line!r}"
        m = re.fullmatch(r"`([^`]+)`", cells[2])
        assert m, f"docs/reference_problems.md:{i}: the last cell must be one `expression`: {cells[2]!r}"
        try:
            value = float(cells[1])
        except ValueError:
            raise AssertionError(f"docs/reference_problems.md:{i}: {cells[1]!r} is not a number") from None
        rows.append(Row(section, i, cells[0], value, m[1]))
    return rows


def _setup_block(text: str) -> str:
    m = re.search(r"^```python\n(.*?)^```", text, re.S | re.M)
    assert m, "docs/reference_problems.md has no ```python set-up block"
    return m[1]


def _agrees(printed: float, computed: float) -> bool:
    if printed == 0:
        return abs(computed) <= ZERO_TOL
    return math.isclose(printed, computed, rel_tol=REL_TOL)


ROWS = _rows(_text()) if DOC.is_file() else []


@pytest.fixture(scope="module")
def namespace():
    ns: dict = {"__name__": "reference_problems_setup"}
    exec(compile(_setup_block(_text()), str(DOC), "exec"), ns)
    return ns


def _searched_files():
    for name in SEARCHED:
        p = ROOT / name
        if p.is_file():
            yield p
        elif p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and "__pycache__" not in f.parts:
                    yield f


def test_nothing_points_outside_the_project():
    """No file of the package, examples, data, docs, benchmarks or tests names the original
    specification (users do not have it) or reads from outside the project."""
    hits = []
    for f in _searched_files():
        if f.resolve() == Path(__file__).resolve():
            continue
        data = f.read_bytes()
        for s in FORBIDDEN:
            if s.encode() in data:
                line = data[:data.index(s.encode())].count(b"\n") + 1
                hits.append(f"{f.relative_to(ROOT)}:{line}: {s}")
    assert not hits, "references to files users do not have:\n" + "\n".join(hits)


def test_every_catalogue_model_has_a_section():
    headings = _headings(_text())
    slugs = {_slug(h) for h in headings}
    for info in ms.list_models():
        assert any(f"`{info.name}`" in h for h in headings), f"no heading names `{info.name}`"
        # its catalogue entry (printed by `multiscale models`) points to its section
        path, _, anchor = info.reference.partition("#")
        assert path == "docs/reference_problems.md", (info.name, info.reference)
        assert anchor in slugs, f"{info.name}: reference {info.reference!r} names no heading"
        heading = next(h for h in headings if _slug(h) == anchor)
        assert f"`{info.name}`" in heading, (info.name, heading)


def test_links_to_the_page_resolve():
    slugs = {_slug(h) for h in _headings(_text())}
    pattern = re.compile(rb"reference_problems\.md#([\w-]+)")
    bad, n = [], 0
    for f in _searched_files():
        for m in pattern.finditer(f.read_bytes()):
            n += 1
            if m[1].decode() not in slugs:
                bad.append(f"{f.relative_to(ROOT)}: #{m[1].decode()}")
    assert n >= 9, "expected links from the catalogue, README, examples and docs"
    assert not bad, "anchors that match no heading of docs/reference_problems.md:\n" + "\n".join(bad)


def test_every_problem_with_an_exact_answer_quotes_checked_values():
    sections = {r.section for r in ROWS}
    problems = [h for h in _headings(_text()) if re.match(r"Problem \d", h)]
    assert len(problems) >= 10
    for h in problems:
        if "lorenz96" in h:  # no exact answer: published fits only
            continue
        assert h in sections, f"section {h!r} has no checked value table"
    assert len(ROWS) >= 80


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_quoted_value_is_what_the_package_computes(row, namespace):
    computed = float(eval(row.expression, dict(namespace)))  # noqa: S307 - the project's own page
    assert _agrees(row.value, computed), (
        f"docs/reference_problems.md:{row.line} ({row.section}): {row.quantity} is printed as "
        f"{row.value!r}, the package computes {computed!r} by {row.expression}")


def test_the_value_check_can_fail():
    """The tolerance is live: a printed value off by 2e-6 relative would fail, and a malformed
    row is an error, not a skipped row."""
    assert ROWS
    for r in ROWS:
        if r.value != 0:
            assert not _agrees(r.value * (1 + 2e-6), r.value)
    assert not _agrees(0.0, 1e-9) and not _agrees(1e-9, 1e-9 * (1 + 2e-6))
    bad = f"## Problem 9: x\n\n{TABLE_HEADER}\n|---|---|---|\n| F(0) | 0.1x | `exact.f(0)` |\n"
    with pytest.raises(AssertionError, match="not a number"):
        _rows(bad)
    bad = f"## Problem 9: x\n\n{TABLE_HEADER}\n|---|---|---|\n| F(0) | 0.1 | exact.f(0) |\n"
    with pytest.raises(AssertionError, match="one `expression`"):
        _rows(bad)
