"""The main job (``multiscale run``) and ``multiscale validate`` from the command line."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import multiscale as _ms_for_path

pytestmark = pytest.mark.slow  # the whole pipeline, run for real

pytest.importorskip("torch")

# Children import the same multiscale as this process, from a directory with no sources.
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
PKG_PARENT = Path(_ms_for_path.__file__).resolve().parents[1]
CWD = Path(tempfile.gettempdir())  # any folder without the sources; every command names its outputs


def _cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "multiscale", *args], cwd=CWD, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """The whole pipeline on the default problem (reference problem 2) at reduced size."""
    out = tmp_path_factory.mktemp("run")
    r = _cli("run", "--quick", "--out", str(out), "--seed", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[5/5]" in r.stdout and "checks:" in r.stdout
    return out


def test_main_job_writes_the_report_and_every_check_passes(run_dir):
    for f in ("report.md", "validation.nc", "simulation.nc", "averaged.nc", "surrogate.h5",
              "surrogate.mss", "summary.json", "summary.txt"):
        assert (run_dir / f).is_file(), f
    # the figure needs the optional plot extra; without it the run still completes, figure-less
    assert (run_dir / "validation.png").is_file() == HAS_MATPLOTLIB
    s = json.loads((run_dir / "summary.json").read_text())
    assert s["model"] == "tilted_double_well" and s["all_checks_passed"], s["checks"]
    assert s["c_api_max_relative_difference"] < 1e-12
    report = (run_dir / "report.md").read_text()
    for heading in ("Three errors, kept apart", "Invariant density", "Metastability", "Rare event", "Checks"):
        assert heading in report
    v = _ms_for_path.open_dataset(run_dir / "validation.nc")  # read into memory and closed
    assert set(v["mfpt"].coords["direction"].values) == {"left_to_right", "right_to_left"}
    # the exact limit's MFPTs (reference problem 2: 22.7353 and 36.6116; reflecting at the
    # domain's ends changes them by < 0.1%)
    assert float(v["mfpt"].sel(direction="left_to_right", source="exact")) == pytest.approx(22.73530191, rel=1e-3)
    assert float(v["mfpt"].sel(direction="right_to_left", source="exact")) == pytest.approx(36.61158752, rel=1e-3)
    assert v["density_full"].dims == ("bin",) and v["distance"].shape == (4, 3)


def test_validate_command_on_the_saved_surrogate(run_dir, tmp_path):
    r = _cli("validate", "--surrogate", str(run_dir / "surrogate.h5"), "--model", "tilted_double_well",
             "--eps", "0.05", "--dt", "5e-4", "--quick", "--no-surrogate-ams", "--estimates",
             str(run_dir / "averaged.nc"), "--out", str(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Three errors" in r.stdout and (tmp_path / "report.md").is_file()
    bad = _cli("validate", "--surrogate", str(tmp_path / "missing.h5"), "--model", "tilted_double_well",
               "--out", str(tmp_path))
    assert bad.returncode == 2 and "missing.h5" in bad.stderr


def test_run_config_file_errors_name_the_key(tmp_path):
    from multiscale.pipeline import RunConfig

    good = tmp_path / "good.toml"
    good.write_text('[run]\nmodel = "fast_ou_linear"\neps = 0.01\ngrid = [-2.5, 2.5, 21]\n'
                    '[run.averaging]\ntime = 50.0\n')
    cfg = RunConfig.from_toml(good, seed=3)
    assert cfg.model == "fast_ou_linear" and cfg.grid == (-2.5, 2.5, 21) and cfg.averaging.time == 50.0
    assert cfg.seed == 3 and cfg.averaging.dt == RunConfig().averaging.dt
    bad = tmp_path / "bad.toml"
    bad.write_text("[run]\nepz = 0.1\n")
    with pytest.raises(ValueError, match=r"run\.epz"):
        RunConfig.from_toml(bad)
    bad.write_text("[run.averaging]\nstep = 0.1\n")
    with pytest.raises(ValueError, match=r"run\.averaging\.step"):
        RunConfig.from_toml(bad)
    r = _cli("run", "--config", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "nope.toml" in r.stderr
    r = _cli("run", "--model", "lorenz96", "--param", "K=4", "--quick", "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "stencil=3 needs at least 7 slow variables" in r.stderr
