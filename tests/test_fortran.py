"""The Fortran route: the iso_c_binding module over the C API and the Euler-Maruyama example
(skipped, with the reason, where gfortran is not installed)."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale.export as ex  # noqa: E402
from multiscale.surrogate import DiffusionForm, EffectiveSDE  # noqa: E402

FORTRAN = Path(__file__).resolve().parent.parent / "examples" / "downstream" / "fortran"


@pytest.fixture(scope="module")
def fortran(tmp_path_factory):
    if shutil.which("gfortran") is None:
        pytest.skip("gfortran is not installed (apt-get install gfortran): Fortran route not tested")
    try:
        libdir = ex.get_library_dir()
    except FileNotFoundError as err:  # pragma: no cover
        pytest.skip(f"libmultiscale_surrogate is not built: {err}")
    out = tmp_path_factory.mktemp("fortran")
    env = {**os.environ, "PYTHON": sys.executable, "MULTISCALE_LIBDIR": libdir}
    subprocess.run(["bash", str(FORTRAN / "build.sh"), str(out)], check=True, env=env, capture_output=True)
    return out


def _model(m: int, form: DiffusionForm, gradient: bool) -> EffectiveSDE:
    sde = EffectiveSDE(m, members=3, hidden=(8, 8), diffusion=form, gradient=gradient, seed=m)
    sde.set_scaling(0.1 * np.arange(m), 1.5 + np.arange(m), 0.0, 2.0 + np.arange(m), 0.8 + 0.3 * np.arange(m))
    return sde


@pytest.mark.parametrize("m, form, gradient", [(1, DiffusionForm.SCALAR, False), (2, DiffusionForm.CHOLESKY, True),
                                               (3, DiffusionForm.CHOLESKY, False)])
def test_fortran_module_matches_python(fortran, tmp_path, m, form, gradient):
    sde = _model(m, form, gradient)
    path = ex.export_surrogate(sde, tmp_path / "s.mss")
    x = np.random.default_rng(2).normal(size=(12, m))
    states = f"{x.shape[0]}\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in x)
    for member in (-1, 1):
        kw = {} if member < 0 else {"member": member}
        r = subprocess.run([str(fortran / "check_eval"), str(path), str(member)], input=states,
                           capture_output=True, text=True, check=True)
        rows: dict[str, list] = {"drift": [], "diffusion": [], "noise": []}
        for line in r.stdout.splitlines():
            key, *vals = line.split()
            rows[key].append([float(v) for v in vals])
        for key, ref in (("drift", sde.drift(x, **kw)), ("diffusion", sde.diffusion(x, **kw)),
                         ("noise", sde.noise(x, **kw))):
            got = np.array(rows[key]).reshape(ref.shape)
            np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())


def test_fortran_euler_maruyama_matches_python_simulation(fortran, tmp_path):
    sde = _model(1, DiffusionForm.SCALAR, False)
    path = ex.export_surrogate(sde, tmp_path / "s.mss")
    n_f, n_py = 2000, 4000
    r = subprocess.run([str(fortran / "euler_maruyama"), str(path), str(n_f), "200", "0.01"],
                       capture_output=True, text=True, check=True)
    vals = {line.split()[0]: float(line.split()[2]) for line in r.stdout.splitlines()}
    xp = sde.simulate(t_end=2.0, dt=0.01, x0=0.0, n_paths=n_py, seed=4).trajectory.values[:, -1, 0]
    mp, vp = xp.mean(), xp.var(ddof=1)
    assert abs(vals["mean"] - mp) < 4 * math.sqrt(vp / n_f + vp / n_py), (vals, mp, vp)
    assert abs(vals["var"] - vp) < 4 * vp * math.sqrt(2 / n_f + 2 / n_py), (vals, vp)


def test_fortran_refuses_a_corrupted_file(fortran, tmp_path):
    path = ex.export_surrogate(_model(1, DiffusionForm.SCALAR, False), tmp_path / "s.mss")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 50])
    r = subprocess.run([str(fortran / "euler_maruyama"), str(path), "10", "1"], capture_output=True, text=True)
    assert r.returncode == 1 and "truncated" in r.stderr and str(path) in r.stderr
