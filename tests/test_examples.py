"""The numbered examples (examples/NN_*.py) run end to end with ``--quick``: each exits 0 (every
key number within its tolerance of the exact answer) and prints its table with the exact values.

Each runs in a subprocess from an empty directory, importing the same multiscale as this
process (as tests/test_cli.py does). About a minute for all of them on 2 cores.
"""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms
from multiscale import exact
from multiscale.validate import committor, exact_limit, mfpt

# every example script, run for real; they draw figures (the plot extra)
pytestmark = [pytest.mark.slow, pytest.mark.plot]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
PKG_PARENT = Path(ms.__file__).resolve().parents[1]


def _exact_strings(name: str) -> list[str]:
    """Exact values the example's table must show, computed here by the package (formatted as
    the table formats them, 6 significant digits), or a label where there is no exact value."""
    g = lambda v: f"{v:.6g}"  # noqa: E731
    if name.startswith("01"):
        return [g(exact.fast_ou_linear_moments()[2]), g(exact.fast_ou_linear_moments()[4])]
    if name.startswith("02"):
        return [g(exact.tilted_double_well_prob_positive())]
    if name.startswith("03"):
        return [g(0.5 * exact.periodic_homogenized_K(A=1.0, sigma=0.5))]
    if name.startswith("04"):
        return [g(exact.fast_ou_noise_moments(powers=(2,))[2])]
    if name.startswith("05"):
        lim = exact_limit("double_well", {"sigma": 0.4})
        return [g(mfpt(lim.drift, lim.diffusion, -1.0, 1.0)), g(math.pi * math.sqrt(2) * math.exp(1 / 0.32))]
    if name.startswith("06"):
        lim = exact_limit("ornstein_uhlenbeck")
        return [g(float(committor(lim.drift, lim.diffusion, 0.0, 5.0, 0.1)))]
    if name.startswith("07"):
        return ["U(0)", "ring-shift symmetry", "learned U vs estimates"]
    if name.startswith("08"):  # c = sigma = 1: rho ∝ exp(2 int F / sigma^2), F = x - x^3 + c e^-1/2 sin x
        m2 = exact.stationary_moments_1d(lambda x: x**2 - x**4 / 2 - 2 * math.exp(-0.5) * np.cos(x), powers=(2,))[2]
        return [g(m2), "TOML round trip", "identical"]
    if name.startswith("09"):
        return [g(exact.fast_ou_linear_moments(c=1.0)[2]), "mpiexec -n 2"]
    raise AssertionError(f"no expected values for {name}")


SCRIPTS = sorted(p.name for p in EXAMPLES.glob("[0-9][0-9]_*.py")) if EXAMPLES.is_dir() else []


def test_every_example_is_listed():
    if not SCRIPTS:
        pytest.skip("examples/ not present (installed package without the repository)")
    assert len(SCRIPTS) >= 8, SCRIPTS
    for name in SCRIPTS:
        _exact_strings(name)


@pytest.mark.parametrize("name", SCRIPTS)
def test_example_quick(name, tmp_path):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["MPLBACKEND"] = "Agg"
    r = subprocess.run([sys.executable, str(EXAMPLES / name), "--quick", "--out", "figs"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=900)  # a hang guard, not a timing test (shared CI machines)
    out = r.stdout
    assert r.returncode == 0, f"{name} exited {r.returncode}\n{out[-4000:]}\n{r.stderr[-4000:]}"
    header = next((line for line in out.splitlines() if line.startswith("quantity")), "")
    assert "estimate ± s.e." in header and "exact" in header, out[-2000:]
    for s in _exact_strings(name):
        assert s in out, f"{name}: {s!r} not in the printed table\n{out[-3000:]}"
    assert "all checks passed" in out
    figures = list((tmp_path / "figs").glob("*.png"))
    assert figures and all(f.stat().st_size > 10_000 for f in figures), figures
