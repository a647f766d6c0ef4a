"""Fortran route of the export: the iso_c_binding module ``multiscale_surrogate`` over the C API
(examples/downstream/fortran), its build script, and the Euler-Maruyama example.

Skips itself, with the reason, where gfortran is not installed or the C API library
``libmultiscale_surrogate.so`` is not built.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
FORTRAN = ROOT / "examples" / "downstream" / "fortran"
HEADER = ROOT / "csrc" / "include" / "multiscale" / "surrogate" / "c_api.h"
MODULE = FORTRAN / "multiscale_surrogate.f90"


# ------------------------------------------------------------------ static checks (no compiler)
def test_module_binds_every_c_api_function():
    declared = set(re.findall(r"\b(ms_surrogate_\w+)\s*\(", HEADER.read_text()))
    bound = set(re.findall(r'bind\(C,\s*name="(ms_surrogate_\w+)"\)', MODULE.read_text(), re.IGNORECASE))
    assert declared, "no functions found in c_api.h"
    assert declared == bound, {"missing in the Fortran module": declared - bound, "not in c_api.h": bound - declared}


def test_module_error_codes_match_header():
    header = dict(re.findall(r"#define\s+(MS_SURROGATE_\w+)\s+(-?\d+)", HEADER.read_text()))
    module = dict(re.findall(r"parameter,\s*public\s*::\s*(MS_SURROGATE_\w+)\s*=\s*(-?\d+)", MODULE.read_text(),
                             re.IGNORECASE))
    assert header and all(module.get(k) == v for k, v in header.items()), (header, module)
    assert module["MS_SURROGATE_ERR_OPEN"] not in header.values()  # the wrappers' own code


# ------------------------------------------------------------------ built programs
@pytest.fixture(scope="module")
def export():
    if shutil.which("gfortran") is None:
        pytest.skip("gfortran is not installed (e.g. apt-get install gfortran): the Fortran route is not tested")
    pytest.importorskip("torch")
    import multiscale.export as ex

    if not hasattr(ex, "get_library_dir") or not hasattr(ex, "get_include"):
        pytest.skip("multiscale.export has no get_library_dir/get_include: the C API library is not available")
    try:
        libdir, include = ex.get_library_dir(), ex.get_include()
    except FileNotFoundError as err:
        pytest.skip(f"libmultiscale_surrogate is not built: {err}")
    if not (Path(libdir) / "libmultiscale_surrogate.so").is_file():
        pytest.skip(f"libmultiscale_surrogate.so is missing from {libdir}")
    return ex, include, libdir


@pytest.fixture(scope="module")
def programs(export, tmp_path_factory) -> Path:
    _, include, libdir = export
    out = tmp_path_factory.mktemp("fortran-build")
    env = {**os.environ, "MULTISCALE_INCLUDE": include, "MULTISCALE_LIBDIR": libdir, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(FORTRAN / "build.sh"), str(out)], env=env, capture_output=True, text=True,
                       cwd=out, timeout=300)
    assert r.returncode == 0, f"build.sh failed:\n{r.stdout}\n{r.stderr}"
    for prog in ("euler_maruyama", "check_eval"):
        assert os.access(out / prog, os.X_OK), r.stdout
    assert "Warning" not in r.stderr, r.stderr  # -Wall is clean
    return out


def _model(dim: int = 1, **kw):
    from multiscale.surrogate import EffectiveSDE

    model = EffectiveSDE(dim, members=3, hidden=(8,), seed=0, **kw)
    if dim == 1:
        model.set_scaling(0.1, 1.5, 0.0, 2.0, 0.8)
    else:
        r = np.arange(dim)
        model.set_scaling(0.1 * r, 1.5 + r, 0.2 * r, 2.0 + r, 0.8 + 0.3 * r)
    return model


@pytest.fixture
def surrogate(export, tmp_path):
    ex, _, _ = export
    model = _model()
    path = tmp_path / "surrogate.mss"
    ex.export_surrogate(model, path)
    return model, path


def _check_eval(programs: Path, path: Path, member: int, x: np.ndarray, tmp_path: Path) -> dict[str, np.ndarray]:
    states = tmp_path / f"states_{member}.txt"
    states.write_text(f"{x.shape[0]}\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in x) + "\n")
    r = subprocess.run([str(programs / "check_eval"), str(path), str(member), str(states)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    rows: dict[str, list] = {"drift": [], "diffusion": [], "noise": []}
    for line in r.stdout.splitlines():
        key, *vals = line.split()
        rows[key].append([float(v) for v in vals])
    n, m = x.shape
    return {"drift": np.array(rows["drift"]).reshape(n, m),
            "diffusion": np.array(rows["diffusion"]).reshape(n, m, m),
            "noise": np.array(rows["noise"]).reshape(n, m, m)}


def _compare(model, got: dict[str, np.ndarray], x: np.ndarray, member: int) -> None:
    kw = {} if member < 0 else {"member": member}
    n, m = x.shape
    for key in ("drift", "diffusion", "noise"):
        ref = np.asarray(getattr(model, key)(x[:, 0] if m == 1 else x, **kw), dtype=float)
        ref = ref.reshape(got[key].shape)
        np.testing.assert_allclose(got[key], ref, rtol=1e-12, atol=1e-14 * max(1.0, np.abs(ref).max()),
                                   err_msg=f"{key}, member {member}")


def test_fortran_evaluation_matches_python(programs, surrogate, tmp_path):
    model, path = surrogate
    x = np.linspace(-3.0, 3.0, 13)[:, None]
    for member in (-1, 1):
        _compare(model, _check_eval(programs, path, member, x, tmp_path), x, member)


def test_fortran_noise_factor_is_returned_lower_triangular(programs, export, tmp_path):
    """In 3-D the C row-major matrices must come back as s(i, j, k) = S_ij (not transposed)."""
    ex, _, _ = export
    model = _model(3)
    path = tmp_path / "s3.mss"
    ex.export_surrogate(model, path)
    x = np.random.default_rng(3).normal(size=(7, 3))
    for member in (-1, 1):
        got = _check_eval(programs, path, member, x, tmp_path)
        _compare(model, got, x, member)
        assert np.all(np.triu(got["noise"], k=1) == 0.0) and np.any(np.tril(got["noise"], k=-1) != 0.0)
        np.testing.assert_allclose(got["noise"] @ got["noise"].transpose(0, 2, 1), got["diffusion"],
                                   rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("dim, form, gradient", [(1, "SCALAR", False), (2, "CHOLESKY", True), (2, "DIAGONAL", False)])
def test_fortran_evaluation_matches_python_for_every_form(programs, export, tmp_path, dim, form, gradient):
    from multiscale.surrogate import DiffusionForm

    ex, _, _ = export
    model = _model(dim, diffusion=DiffusionForm[form], gradient=gradient)
    path = tmp_path / "s.mss"
    ex.export_surrogate(model, path)
    x = np.random.default_rng(dim).normal(size=(9, dim))
    for member in (-1, 2):
        _compare(model, _check_eval(programs, path, member, x, tmp_path), x, member)


def test_fortran_info(programs, export, surrogate):
    ex, _, _ = export
    model, path = surrogate
    r = subprocess.run([str(programs / "check_eval"), str(path), "info"], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split("\n")[:4] == ["dim 1", "members 3", f"version {ex.FORMAT_VERSION}",
                                        f"name 0 {model.names[0]}"]


def test_fortran_rejects_a_bad_member(programs, surrogate, tmp_path):
    _, path = surrogate
    states = tmp_path / "one.txt"
    states.write_text("1\n0.0\n")
    r = subprocess.run([str(programs / "check_eval"), str(path), "3", str(states)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 1 and "member" in r.stderr, (r.returncode, r.stderr)


def test_fortran_euler_maruyama_matches_python_simulation(programs, surrogate):
    model, path = surrogate
    n_f, n_py = 2000, 4000
    r = subprocess.run([str(programs / "euler_maruyama"), str(path), str(n_f), "500", "0.01"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    vals = {(line.split()[0], int(line.split()[1])): float(line.split()[2]) for line in r.stdout.splitlines()}
    assert set(vals) == {("mean", 0), ("var", 0)}, r.stdout
    ds = model.simulate(t_end=5.0, dt=0.01, n_paths=n_py, seed=1, x0=0.0)
    xp = np.asarray(ds.trajectory.values[:, -1, 0], dtype=float)
    mp, vp = float(xp.mean()), float(xp.var(ddof=1))
    mf, vf = vals[("mean", 0)], vals[("var", 0)]
    assert vp > 0 and vf > 0, (vf, vp)
    assert abs(mf - mp) < 4 * math.sqrt(vp / n_f + vp / n_py), (mf, mp, vp)
    # standard error of a sample variance of (near-)Gaussian data: var * sqrt(2 / n)
    assert abs(vf / vp - 1.0) < 4 * math.sqrt(2 / n_f + 2 / n_py), (vf, vp)


def test_fortran_euler_maruyama_is_reproducible(programs, surrogate):
    _, path = surrogate
    runs = [subprocess.run([str(programs / "euler_maruyama"), str(path), "50", "20"], capture_output=True,
                           text=True, timeout=60) for _ in range(2)]
    assert runs[0].returncode == 0 and runs[0].stdout == runs[1].stdout, runs[0].stderr


def test_fortran_euler_maruyama_refuses_a_truncated_file(programs, surrogate):
    _, path = surrogate
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 50])
    r = subprocess.run([str(programs / "euler_maruyama"), str(path), "10", "5"], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0
    assert str(path) in r.stderr and re.search(r"truncat|corrupt|payload", r.stderr), r.stderr
    assert r.stdout == ""


def test_fortran_euler_maruyama_argument_errors(programs, surrogate, tmp_path):
    _, path = surrogate
    exe = str(programs / "euler_maruyama")
    for args, needle in (([], "usage"), ([str(tmp_path / "missing.mss")], "missing.mss"),
                         ([str(path), "many"], "n_paths"), ([str(path), "10", "5", "-0.1"], "dt")):
        r = subprocess.run([exe, *args], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and needle in r.stderr, (args, r.returncode, r.stderr)


def test_build_script_fails_clearly_without_gfortran(tmp_path):
    env = {**os.environ, "FC": "no-such-fortran-compiler"}
    r = subprocess.run(["bash", str(FORTRAN / "build.sh"), str(tmp_path / "out")], env=env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode != 0 and "not found" in r.stderr and "gfortran" in r.stderr, r.stderr
