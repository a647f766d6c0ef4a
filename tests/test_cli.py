"""The ``multiscale`` command line and the netCDF round trip."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import multiscale as ms

# Children import the same multiscale as this process (the installed, compiled package in CI;
# the source tree with its built module in development), from a directory with no sources.
import multiscale as _ms_for_path  # noqa: E402
import tempfile  # noqa: E402

PKG_PARENT = Path(_ms_for_path.__file__).resolve().parents[1]
CWD = Path(tempfile.gettempdir())  # any folder without the sources; every command names its outputs


def _cli(*args: str, cwd: Path = CWD) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PKG_PARENT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return subprocess.run([sys.executable, "-m", "multiscale", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def _without_created(ds: xr.Dataset) -> xr.Dataset:
    ds = ds.copy()
    ds.attrs = {k: v for k, v in ds.attrs.items() if k != "created"}
    return ds


def test_models_lists_every_model_with_parameters():
    r = _cli("models")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    models = ms.list_models()
    assert len(models) == 9
    lines = out.splitlines()
    for info in models:
        head = [i for i, line in enumerate(lines) if line.startswith(info.name + "  [")]
        assert len(head) == 1, info.name
        block = []
        for line in lines[head[0] + 1:]:
            if not line.startswith("    "):
                break
            block.append(line)
        # description, equations, one row per parameter, then the reference
        assert block[1].strip() == info.equations, info.name
        assert block[-1].strip().startswith("exact answers:"), info.name
        rows = block[2:-1]
        assert [row.split()[0] for row in rows] == list(info.param_names), info.name
        for p, row in zip(info.params, rows):
            assert row.split()[1] == "="
            assert float(row.split()[2]) == pytest.approx(p.default, rel=1e-5), (info.name, p.name)


def test_info_prints_build_json():
    r = _cli("info")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert "cuda_compiled" in info and isinstance(info["cuda_compiled"], bool)
    assert info == json.loads(json.dumps(ms.build_info()))


SIM_ARGS = ["--model", "fast_ou_linear", "--param", "c=0.3", "--eps", "0.02", "--paths", "64",
            "--t-end", "0.1", "--dt", "0.001", "--seed", "3", "--save-every", "10", "--threads", "1"]


def test_simulate_writes_readable_identical_file(tmp_path):
    out = tmp_path / "x.nc"
    r = _cli("simulate", *SIM_ARGS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    assert out.exists() and not (tmp_path / "x.nc.partial").exists()
    assert "fast_ou_linear: 64 paths x 100 steps" in r.stdout and "0 failed" in r.stdout
    ref = ms.simulate("fast_ou_linear", params={"c": 0.3}, eps=0.02, n_paths=64, t_end=0.1,
                      dt=0.001, seed=3, save_every=10, threads=1)
    with xr.open_dataset(out) as ds:  # default engine
        ds = ds.load()
    assert set(ds.data_vars) == set(ref.data_vars) == {"trajectory", "final_state", "status", "fail_step"}
    for name in ref.data_vars:
        assert ds[name].dtype == ref[name].dtype, name
        assert np.array_equal(ds[name].values, ref[name].values), name
    assert "created" in ds.attrs
    xr.testing.assert_identical(_without_created(ds), _without_created(ref))


def test_simulate_relative_out_path_in_cwd(tmp_path):
    r = _cli("simulate", *SIM_ARGS, "--float32", "--out", "rel.nc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    ds = ms.open_dataset(tmp_path / "rel.nc")
    assert ds["final_state"].dtype == np.float32 and ds.attrs["precision"] == "float32"
    ref = ms.simulate("fast_ou_linear", params={"c": 0.3}, eps=0.02, n_paths=64, t_end=0.1,
                      dt=0.001, seed=3, save_every=10, precision=ms.Precision.FLOAT32)
    assert np.array_equal(ds["final_state"].values, ref["final_state"].values)


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0"], "dt=0.0"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--param", "bogus=1"], "'bogus'"),
        (["--model", "nope", "--t-end", "0.1", "--dt", "0.001"], "'nope'"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--param", "c=abc"], "'abc'"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--param", "c"], "'c'"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.003"], "t_end=0.1"),
        (["--model", "double_well", "--t-end", "0.1", "--dt", "0.001", "--eps", "0.1"], "eps=0.1"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--paths", "0"], "n_paths=0"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--device", "tpu"], "device='tpu'"),
        (["--model", "fast_ou_linear", "--t-end", "0.1", "--dt", "0.001", "--device", "cuda"], "cuda"),
        (["--model", "tilted_double_well", "--t-end", "0.1", "--dt", "0.001", "--fast-step", "exact_ou"],
         "EXACT_OU"),
    ],
)
def test_simulate_bad_input_exits_2(tmp_path, args, pattern):
    out = tmp_path / "bad.nc"
    r = _cli("simulate", *args, "--out", str(out))
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert pattern in r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    assert "error" in r.stderr
    assert not out.exists()


def test_simulate_missing_output_directory(tmp_path):
    r = _cli("simulate", *SIM_ARGS, "--out", str(tmp_path / "nodir" / "x.nc"))
    assert r.returncode == 2
    assert "nodir" in r.stderr and "Traceback" not in r.stderr


def test_simulate_failed_paths_exit_3_and_write_partial(tmp_path):
    out = tmp_path / "fail.nc"
    r = _cli("simulate", "--model", "double_well", "--param", "sigma=3", "--t-end", "20", "--dt", "1",
             "--paths", "16", "--seed", "1", "--out", str(out))
    assert r.returncode == 3, r.stderr
    assert "NONFINITE" in r.stderr and "Traceback" not in r.stderr
    ds = ms.open_dataset(out)
    assert np.count_nonzero(ds["status"].values) == ds.attrs["n_failed"] > 0
    r2 = _cli("simulate", "--model", "double_well", "--param", "sigma=3", "--t-end", "20", "--dt", "1",
              "--paths", "16", "--seed", "1", "--no-throw", "--out", str(tmp_path / "ok.nc"))
    assert r2.returncode == 0, r2.stderr
    ds2 = ms.open_dataset(tmp_path / "ok.nc")
    assert np.array_equal(ds2["status"].values, ds["status"].values)


# ---------------------------------------------------------------------------------------------
# save_dataset / open_dataset


@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32], ids=["f64", "f32"])
def test_round_trip_with_observables(tmp_path, precision):
    obs = ms.Observables(("x", "y"), window=0.05, start=0.05, histogram=ms.Histogram(12, -2.5, 2.5),
                         shift=0.1)
    ds = ms.simulate("fast_ou_linear", eps=0.02, dt=1e-3, t_end=0.2, n_paths=40, seed=5, save_every=20,
                     observables=obs, precision=precision)
    assert {"obs_mean", "obs_var", "obs_count", "hist_count", "hist_underflow", "hist_overflow"} <= set(ds)
    path = ms.save_dataset(ds, tmp_path / "obs.nc")
    assert path == tmp_path / "obs.nc"
    back = ms.open_dataset(path)
    xr.testing.assert_identical(back, ds)  # including "created"
    with xr.open_dataset(path) as plain:
        xr.testing.assert_identical(plain.load(), ds)
    again = ms.resimulate(back)
    for name in ds.data_vars:
        assert np.array_equal(again[name].values, ds[name].values), name


def test_round_trip_model_without_eps_and_failures(tmp_path):
    x0 = np.array([0.0, 100.0, 0.5]).reshape(3, 1)
    ds = ms.simulate("double_well", params={"sigma": 0.0}, dt=0.5, t_end=5.0, x0=x0, n_paths=3,
                     save_every=1, throw=False, observables=ms.Observables(("x",)))
    assert np.isnan(ds.attrs["eps"]) and np.isnan(ds["trajectory"].values).any()
    back = ms.open_dataset(ms.save_dataset(ds, tmp_path / "dw.nc"))
    xr.testing.assert_identical(back, ds)
    assert np.array_equal(back["status"].values, [0, 1, 0])


def test_save_dataset_refuses_missing_directory(tmp_path):
    ds = ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=2)
    with pytest.raises(ValueError, match="nodir"):
        ms.save_dataset(ds, tmp_path / "nodir" / "a.nc")


def test_save_dataset_overwrites_atomically(tmp_path):
    a = ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=2, seed=1)
    b = ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=2, seed=2)
    p = tmp_path / "same.nc"
    ms.save_dataset(a, p)
    ms.save_dataset(b, p)
    assert sorted(os.listdir(tmp_path)) == ["same.nc"]
    assert np.array_equal(ms.open_dataset(p)["final_state"].values, b["final_state"].values)
