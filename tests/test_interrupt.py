"""Ctrl-C (SIGINT) stops a long compiled run promptly with KeyboardInterrupt."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

# Children import the same multiscale as this process (the installed, compiled package in CI;
# the source tree with its built module in development), from a directory with no sources.
import multiscale as _ms_for_path  # noqa: E402
import tempfile  # noqa: E402

PKG_PARENT = Path(_ms_for_path.__file__).resolve().parents[1]
CWD = Path(tempfile.mkdtemp(prefix="multiscale-test-"))

pytestmark = pytest.mark.skipif(os.name != "posix", reason="SIGINT delivery needs POSIX")

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    import multiscale as ms
    kw = dict(eps=0.01, n_paths=200_000, dt=1e-4, t_end=100.0, save_times=[], seed=1)
    if sys.argv[1] == "float32":
        kw["precision"] = ms.Precision.FLOAT32
    if sys.argv[1] == "observables":
        kw["observables"] = ms.Observables(("x", "y"), window=1.0, histogram=ms.Histogram(10, -2, 2))
    print("ready", flush=True)
    t0 = time.perf_counter()
    try:
        if sys.argv[1] == "passage":  # first passages that would take hours (barrier 2 dU/sigma^2 = 12.5)
            from multiscale.validate import first_passage
            first_passage("double_well", params={"sigma": 0.2}, x0=-1.0, hi=1.0, dt=1e-3, n_paths=100_000,
                          max_time=1e6)
        else:
            ms.simulate("fast_ou_linear", **kw)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
    else:
        print("finished after %.1f s" % (time.perf_counter() - t0), flush=True)
        sys.exit(1)
    # the extension is still usable after the interruption
    a = ms.simulate("double_well", dt=0.01, t_end=0.1, n_paths=5, seed=2)
    b = ms.simulate("double_well", dt=0.01, t_end=0.1, n_paths=5, seed=2)
    assert a["status"].values.tolist() == [0] * 5
    assert np.array_equal(a["final_state"].values, b["final_state"].values)
    print("usable", flush=True)
    sys.exit(0)
    """
)


@pytest.mark.parametrize("variant", ["float64", "float32", "observables", "passage"])
def test_sigint_stops_long_run(variant):
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, variant], cwd=CWD, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        assert line.strip() == "ready", (line, proc.stderr.read() if proc.poll() is not None else "")
        time.sleep(1.0)
        assert proc.poll() is None, "the run ended before the signal"
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in out, (out, err)
    assert "usable" in out, (out, err)
    assert proc.returncode == 0, (proc.returncode, err)
    assert elapsed < 3.0, elapsed
