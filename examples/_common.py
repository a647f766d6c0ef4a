"""Shared by the numbered examples: the command line, the results table and the exit status.

Each example prints its key numbers beside the exact answers in a table like

    quantity                      estimate ± s.e.         exact        z / rel.err   check
    E[X^2], full system           1.2449 ± 0.0012         1.2461       z = -0.97     ok

and exits with status 1 when a checked number misses the exact answer by more than its
tolerance (|z| > 4 by default), so the examples double as end-to-end tests.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
import time

_T0 = time.perf_counter()  # imported first by the examples: the wall time includes their imports

import matplotlib

matplotlib.use("Agg")  # files only, no display needed


def parse_args(doc: str) -> argparse.Namespace:
    """``--quick`` (reduced size), ``--out`` (figure folder) and ``--threads``."""
    p = argparse.ArgumentParser(description=doc.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="reduced size: a smoke run of about 10-20 s")
    p.add_argument("--out", default="examples_out", help="folder for the figures (default: examples_out/)")
    p.add_argument("--threads", type=int, default=None, help="compiled-kernel threads (default: all cores)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    args.t0 = _T0
    return args


def _num(v: float) -> str:
    return "nan" if not math.isfinite(v) else f"{v:.6g}"


class Table:
    """Rows of ``estimate ± s.e.`` beside the exact value, each checked against a tolerance."""

    def __init__(self, title: str) -> None:
        self.title = title
        self.rows: list[tuple[str, str, str, str, str]] = []
        self.failures: list[str] = []

    def check(self, label: str, est: float, se: float | None, exact: float, *, z_max: float = 4.0,
              rel_tol: float | None = None, abs_tol: float | None = None) -> bool:
        """One checked row. With ``se`` the test is ``|est - exact| <= z_max se``; with
        ``rel_tol`` it is ``|est/exact - 1| <= rel_tol``; with ``abs_tol``, ``|est - exact| <= abs_tol``."""
        est, exact = float(est), float(exact)
        err = est - exact
        if rel_tol is not None:
            rel = err / abs(exact)
            ok = abs(rel) <= rel_tol
            stat = f"{100 * rel:+.2f}% (tol {100 * rel_tol:g}%)"
        elif abs_tol is not None:
            ok = abs(err) <= abs_tol
            stat = f"{err:+.2g} (tol {abs_tol:g})"
        else:
            z = err / se if se and se > 0 else (0.0 if err == 0 else math.inf)
            ok = abs(z) <= z_max
            stat = f"z = {z:+.2f}"
        value = _num(est) + (f" ± {se:.2g}" if se is not None else "")
        self.rows.append((label, value, _num(exact), stat, "ok" if ok else "MISS"))
        if not ok:
            self.failures.append(label)
        return ok

    def check_all(self, label: str, est, se, exact, *, z_max: float = 4.0) -> bool:
        """One row summarising many points: the largest |z| over them (points with ``se = 0``
        must equal the exact value to rounding)."""
        import numpy as np

        est, se, exact = (np.asarray(v, float).ravel() for v in (est, se, exact))
        err = est - exact
        exact_pts = se <= 0
        z = np.where(exact_pts, 0.0, err / np.where(exact_pts, 1.0, se))
        tol = 1e-9 * (1 + np.abs(exact[exact_pts]))
        ok = bool(np.all(np.abs(z) <= z_max) and np.all(np.abs(err[exact_pts]) <= tol))
        i = int(np.argmax(np.abs(z)))
        self.rows.append((label, f"{est.size} points", "(curve)", f"max |z| = {abs(z[i]):.2f}",
                          "ok" if ok else "MISS"))
        if not ok:
            self.failures.append(label)
        return ok

    def note(self, label: str, value: str, exact: str = "", stat: str = "") -> None:
        """An unchecked row (context, or a number with no exact answer)."""
        self.rows.append((label, value, exact, stat, "note"))

    def finish(self, args: argparse.Namespace, figures: list[str]) -> None:
        """Print the table and the figures, and exit (status 1 if a check missed)."""
        head = ("quantity", "estimate ± s.e.", "exact", "z / rel. err", "check")
        w = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        line = "  ".join("-" * n for n in w)
        print(f"\n{self.title}{'  [--quick]' if args.quick else ''}")
        print(line)
        for r in [head, None, *self.rows]:
            print(line if r is None else "  ".join(c.ljust(n) for c, n in zip(r, w)).rstrip())
        print(line)
        for f in figures:
            print(f"figure: {f}")
        print(f"wall time {time.perf_counter() - args.t0:.1f} s")
        if self.failures:
            print(f"MISSED ({len(self.failures)}): " + "; ".join(self.failures))
            sys.exit(1)
        print("all checks passed")
