"""Every command shown in the documentation is run by a test, so the documentation cannot rot.

The fenced code blocks of README.md, docs/guide.md and docs/reference_problems.md (when they
exist) are extracted and run in document order, each document in its own temporary working directory (later blocks may read the
files earlier ones wrote, as a reader following the document in one directory would):

- ```python blocks: each in a fresh interpreter (a temporary .py file), PYTHONPATH pointing at
  the package parent; it must exit 0. Interactive blocks (starting with ``>>>``) are run as
  doctests instead, so the output they show is checked too.
- ```toml blocks whose first line is ``# NAME.toml`` are written to that file (commands use them).
- ```bash blocks: each non-comment line (backslash continuations joined) is a command:
  ``multiscale ...`` / ``python -m multiscale ...`` run for real, in order; ``python
  benchmarks/...`` runs with ``--help`` only (a benchmark takes minutes); ``python examples/...``
  is checked to be one of the scripts tests/test_examples.py runs with ``--quick``; the set-up
  (``pip install``, ``apt-get install``) and the headline commands (``multiscale run``,
  ``pytest``, ``pytest -m slow``) are what CI runs (.ci/run), checked by ``test_ci_runs_the_readme_commands``.
  Anything else fails: a new command form needs a runner here or an entry in SKIP.
- Cluster-only lines (srun, sbatch, #SBATCH, mpiexec -n N with N > 2) must not be in ```bash
  fences (use ```text); ``mpiexec -n 1|2 ...`` runs where mpiexec is installed, skips otherwise.

Blocks or commands that cannot run are listed in SKIP, the one table, with the reason; an entry
that matches nothing fails, so the table cannot go stale.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

import multiscale as ms

ROOT = Path(__file__).resolve().parents[1]
PKG_PARENT = Path(ms.__file__).resolve().parents[1]
DOCS = [p for p in (ROOT / "README.md", ROOT / "docs" / "guide.md", ROOT / "docs" / "reference_problems.md")
        if p.is_file()]

# The one skip table: (document, a substring of the block (python) or the start of the command
# (bash)) -> reason. Each entry must match at least one block or command.
SKIP: dict[tuple[str, str], str] = {
    ("README.md", "multiscale campaign run sweep.toml"):
        "hours: a production spec (12 grid points x 1e5 paths x 2e4 steps plus averaging, training "
        "and validation); tests/test_campaign.py runs the same commands on small campaigns",
    ("README.md", "multiscale campaign status sweep/"):
        "reads the output of the (skipped) production campaign run",
    ("README.md", "multiscale campaign merge sweep/"):
        "reads the output of the (skipped) production campaign run",
}

# Commands that CI runs itself (.ci/run) and that are therefore not run again here.
CI_HEADLINES = ("multiscale run", "pytest", "pytest -m slow")
# .ci/run commands that are not README commands, with the reason.
CI_ONLY = {
    'python -c "import json, multiscale; print(json.dumps(multiscale.build_info()))"':
        "a smoke check of the installed build before the main job (the README shows `multiscale info`)",
    "apt-get update -qq": "refreshes the package lists when installing gfortran fails at first",
}
# cluster-only lines: batch systems, and mpiexec with more ranks than the 2 a test may use
CLUSTER_ONLY = re.compile(r"^\s*(srun|sbatch|salloc)\b|^\s*#SBATCH|^\s*mpiexec\s+-n\s+([3-9]|\d\d+)", re.M)


@dataclass
class Block:
    doc: str
    line: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}:{self.line}:{self.lang}"


def _blocks(path: Path) -> list[Block]:
    out, lang, start, buf = [], None, 0, []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        m = re.match(r"^```\s*([\w+-]*)\s*$", line)
        if m and lang is None:
            lang, start, buf = m.group(1).lower(), i, []
        elif line.startswith("```") and lang is not None:
            out.append(Block(path.name, start, lang, "\n".join(buf) + "\n"))
            lang = None
        elif lang is not None:
            buf.append(line)
    assert lang is None, f"{path.name}: unclosed fence at line {start}"
    return out


def _commands(text: str) -> list[list[str]]:
    """The commands of a bash block as word lists: comment lines and trailing comments dropped,
    backslash continuations joined."""
    cmds, cur = [], ""
    for line in text.splitlines():
        cur += line
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        words = shlex.split(cur, comments=True)
        if words:
            cmds.append(words)
        cur = ""
    return cmds


ALL = [b for d in DOCS for b in _blocks(d)]
RUNNABLE = [b for b in ALL if b.lang in ("python", "bash", "toml")]


def _skip_reason(block: Block, cmd: list[str] | None = None) -> str | None:
    for (doc, key), reason in SKIP.items():
        if doc != block.doc:
            continue
        if cmd is not None and " ".join(cmd).startswith(key):
            return reason
        if cmd is None and key in block.text:
            return reason
    return None


def _env(cache: Path) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MULTISCALE_CACHE"] = env.get("MULTISCALE_CACHE") or str(cache)
    env.setdefault("MULTISCALE_JIT_CUDA", "0")  # CPU-only builds: nvcc would double the compile time
    env["MPLBACKEND"] = "Agg"
    return env


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory):
    cache = tmp_path_factory.mktemp("jit-cache")
    dirs = {d.name: tmp_path_factory.mktemp("doc-" + d.stem) for d in DOCS}
    return dirs, _env(cache)


def _run(argv: list[str], cwd: Path, env: dict, timeout: float = 900) -> None:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{shlex.join(argv)} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"


def _run_command(words: list[str], block: Block, cwd: Path, env: dict) -> str:
    """Run one documented shell command; returns what was done (for the log)."""
    cmd = shlex.join(words)
    if words[:3] == ["python", "-m", "multiscale"]:
        words = ["multiscale", *words[3:]]
    if words[0] == "multiscale" and " ".join(words) in CI_HEADLINES:
        return "run by .ci/run"
    if words[0] == "pytest" or words[:3] == ["python", "-m", "pytest"]:
        assert " ".join(words) in CI_HEADLINES, f"{cmd!r}: only the README headline pytest commands are documented"
        return "run by .ci/run"
    if words[:2] in (["pip", "install"], ["apt-get", "install"]) or words[:4] == ["python", "-m", "pip", "install"]:
        return "set-up, run by .ci/run"
    if words[0] == "multiscale":
        _run([sys.executable, "-m", "multiscale", *words[1:]], cwd, env)
        return "ran"
    if words[:2] == ["python", "-c"]:
        _run([sys.executable, *words[1:]], cwd, env)
        return "ran"
    if words[0] == "python" and len(words) > 1 and words[1].startswith("benchmarks/"):
        script = ROOT / words[1]
        assert script.is_file(), f"{cmd!r}: no {words[1]}"
        _run([sys.executable, str(script), "--help"], cwd, env, timeout=120)
        return "ran with --help (a benchmark takes minutes)"
    if words[0] == "python" and len(words) > 1 and words[1].startswith("examples/"):
        script = ROOT / words[1]
        assert script.is_file() and re.match(r"\d\d_.*\.py$", script.name), \
            f"{cmd!r}: not one of the numbered examples tests/test_examples.py runs"
        return "covered by tests/test_examples.py (--quick)"
    if words[0] == "mpiexec" and words[1] == "-n" and int(words[2]) <= 2:
        if shutil.which("mpiexec") is None:
            pytest.skip("mpiexec not installed")
        _run([shutil.which("mpiexec"), *words[1:3], sys.executable, *words[4:]], cwd, env)
        return "ran"
    pytest.fail(f"{block.id}: no runner for {cmd!r}; run it here or add it to SKIP with the reason")


@pytest.mark.slow  # every documented command, run for real
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.id for b in RUNNABLE])
def test_doc_block(block, workdirs):
    dirs, env = workdirs
    cwd = dirs[block.doc]
    if block.lang == "toml":
        m = re.match(r"#\s*([\w.-]+\.toml)\s*$", block.text.splitlines()[0])
        if m:
            (cwd / m.group(1)).write_text(block.text)
        return
    if block.lang == "python":
        reason = _skip_reason(block)
        if reason:
            pytest.skip(f"SKIP table: {reason}")
        if block.text.lstrip().startswith(">>>"):
            f = cwd / f"block_{block.line}.txt"
            f.write_text(block.text)
            _run([sys.executable, "-m", "doctest", "-o", "ELLIPSIS", "-o", "NORMALIZE_WHITESPACE", f.name],
                 cwd, env)
        else:
            f = cwd / f"block_{block.line}.py"
            f.write_text(block.text)
            _run([sys.executable, f.name], cwd, env)
        return
    assert not CLUSTER_ONLY.search(block.text), f"{block.id}: cluster-only lines belong in a ```text fence"
    skipped, done = [], []
    for cmd in _commands(block.text):
        reason = _skip_reason(block, cmd)
        if reason:
            skipped.append(f"{shlex.join(cmd)}: {reason}")
            continue
        done.append(f"{shlex.join(cmd)}: {_run_command(cmd, block, cwd, env)}")
    print("\n".join(done + ["SKIP " + s for s in skipped]))
    if skipped and not done:
        pytest.skip("SKIP table: " + "; ".join(skipped))


def test_skip_table_entries_match_the_docs():
    for (doc, key) in SKIP:
        if not any(p.name == doc for p in DOCS):
            continue
        hits = [b for b in ALL if b.doc == doc and (key in b.text)]
        assert hits, f"SKIP entry {doc}: {key!r} matches no block; remove it"


def test_every_fenced_block_has_a_known_language():
    # untagged and ```text blocks are shown, not run (equations, layouts, cluster scripts);
    # any other language needs a runner here
    unknown = [b.id for b in ALL if b.lang not in ("python", "bash", "toml", "text", "")]
    assert not unknown, unknown


def _ci_commands() -> list[str]:
    """The commands .ci/run runs, as word lists (subshells, cd, redirections and guards removed)."""
    text = (ROOT / ".ci" / "run").read_text().replace("\\\n", " ")
    cmds = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        words = list(lex)
        cur: list[str] = []
        i = 0
        while i < len(words):
            w = words[i]
            if w in ("&&", "||", ";", "(", ")", "|", "{", "}", "};"):
                if cur:
                    cmds.append(cur)
                cur = []
            elif w in (">", ">>", ">&", "<", "&>", "2>"):
                if cur and cur[-1].isdigit():
                    cur.pop()
                i += 1  # skip the redirection's target
            else:
                cur.append(w)
            i += 1
        if cur:
            cmds.append(cur)
    keep = ("python", "pip", "multiscale", "pytest", "apt-get")
    return [c for c in cmds if c[0] in keep]


def _normalise(words: list[str]) -> list[str]:
    """CI spells commands for a log (quiet flags, `python -m pip`, an output folder); drop those."""
    out, i = [], 0
    if words[:3] == ["python", "-m", "pip"]:
        words = ["pip", *words[3:]]
    while i < len(words):
        w = words[i]
        if w in ("--quiet", "-q", "-qq", "-y"):
            i += 1
        elif w == "-p" and i + 1 < len(words) and words[i + 1] == "no:cacheprovider":
            i += 2
        elif w == "--out" and words[0] == "multiscale":
            i += 2
        else:
            out.append(w)
            i += 1
    return out


def test_ci_runs_the_readme_commands():
    """What .ci/run runs is what the README shows (the set-up, the main job and the tests), so
    the commands this file does not re-run are run by CI."""
    if not (ROOT / ".ci" / "run").is_file():
        pytest.skip(".ci/run not present (installed package without the repository)")
    readme = [b for b in ALL if b.doc == "README.md" and b.lang == "bash"]
    shown = {tuple(c) for b in readme for c in _commands(b.text)}
    ci = _ci_commands()
    assert ci, "no commands found in .ci/run"
    for words in ci:
        if shlex.join(words) in {shlex.join(shlex.split(k)) for k in CI_ONLY}:
            continue
        assert tuple(_normalise(words)) in shown, f".ci/run runs {shlex.join(words)!r}, which the README does not show"
    normalised = {tuple(_normalise(w)) for w in ci}
    for headline in CI_HEADLINES:
        assert tuple(headline.split()) in shown, f"README does not show {headline!r}"
        assert tuple(headline.split()) in normalised, f".ci/run does not run the README's {headline!r}"
    # every set-up line of the README is run by CI
    for words in shown:
        if list(words[:2]) in (["pip", "install"], ["apt-get", "install"]):
            assert words in normalised, f"README set-up {shlex.join(words)!r} is not run by .ci/run"
