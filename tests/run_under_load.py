"""Run the test suite with CPU-bound processes beside it, as on a shared machine.

The suite must pass on a busy machine: no test may depend on wall-clock time or an idle CPU.
This script is the proof. It starts ``--hogs`` processes that each spin one core, runs pytest
(any arguments after ``--`` go to pytest; by default the fast suite, then ``-m slow``), stops
the hogs on every path, and prints each run's outcome and wall time.

Usage::

    python tests/run_under_load.py                 # two hogs; pytest, then pytest -m slow
    python tests/run_under_load.py --hogs 4 -- -x tests/test_interrupt.py

Exit status: 0 when every pytest run passed, else the first failing run's status.
"""
from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOG = "while True:\n    pass\n"
# The README's command. The `pytest` script, not `python -m pytest`: the latter puts the source
# tree first on sys.path, where the compiled module is not built.
# (Python >= 3.11's -P leaves it out.)
_SCRIPT = Path(sys.executable).with_name("pytest")
PYTEST = [str(_SCRIPT)] if _SCRIPT.is_file() else [sys.executable, "-P", "-m", "pytest"]


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] | None = None
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hogs", type=int, default=2, help="CPU-bound processes beside the tests (default 2)")
    args = ap.parse_args(argv)
    if not _SCRIPT.is_file() and sys.version_info < (3, 11):
        ap.error(f"no pytest script beside {sys.executable} (pip install pytest)")
    if args.hogs < 0:
        ap.error(f"--hogs must be >= 0, got {args.hogs}")
    runs = [extra] if extra is not None else [[], ["-m", "slow"]]

    status = 0
    with contextlib.ExitStack() as stack:
        hogs = [stack.enter_context(subprocess.Popen([sys.executable, "-c", HOG])) for _ in range(args.hogs)]
        for h in hogs:  # on every path, even Ctrl-C: kill before the context managers reap
            stack.callback(lambda h=h: h.poll() is None and h.kill())
        print(f"{len(hogs)} CPU hog(s) running: pids {[h.pid for h in hogs]}", flush=True)
        for run in runs:
            cmd = [*PYTEST, "-q", "-p", "no:cacheprovider", *run]
            t0 = time.perf_counter()
            rc = subprocess.run(cmd, cwd=ROOT).returncode
            wall = time.perf_counter() - t0
            print(f"[run_under_load] pytest {' '.join(run)}: exit {rc} in {wall / 60:.1f} min "
                  f"beside {len(hogs)} hog(s)", flush=True)
            status = status or rc
            if any(h.poll() is not None for h in hogs):  # the proof needs the load for the whole run
                print("[run_under_load] a hog exited early: the load was not sustained", flush=True)
                status = status or 1
    return status


if __name__ == "__main__":
    sys.exit(main())
