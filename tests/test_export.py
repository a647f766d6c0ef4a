"""Export to downstream solvers: the portable file, the C API, the header-only C++ evaluator, the
C and C++ example programs, the SciPy example and the CMake package agree with the Python model."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale as ms  # noqa: E402
import multiscale.export as ex  # noqa: E402
from multiscale.surrogate import DiffusionForm, EffectiveSDE, EffectiveSDEEstimator, SurrogateOptions  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "downstream"


def _close(got, ref):
    """Agreement to 1e-12 relative to the array's scale (float64 evaluation order differs)."""
    ref = np.asarray(ref)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * float(np.abs(ref).max()))


def _model(m: int, form: DiffusionForm, gradient: bool, seed: int = 0) -> EffectiveSDE:
    sde = EffectiveSDE(m, members=4, hidden=(16, 8), diffusion=form, gradient=gradient, seed=seed)
    sde.set_scaling(np.arange(m) * 0.3, 1 + np.arange(m), 0.2, 2 + np.arange(m), 0.7 + 0.5 * np.arange(m))
    return sde


@pytest.fixture(scope="module")
def capi():
    try:
        ex.get_library()
    except FileNotFoundError as err:  # pragma: no cover - a source tree without a build
        pytest.skip(f"libmultiscale_surrogate is not available: {err}")
    return ex.CSurrogate


@pytest.fixture(scope="module")
def programs(tmp_path_factory):
    """The C and C++ example programs, built by the example's own build script."""
    if shutil.which("g++") is None or shutil.which("gcc") is None:  # pragma: no cover
        pytest.skip("no C/C++ compiler")
    out = tmp_path_factory.mktemp("downstream")
    env = {**os.environ, "PYTHON": sys.executable, "MULTISCALE_NO_CMAKE": "1",
           "MULTISCALE_INCLUDE": ex.get_include(), "MULTISCALE_LIBDIR": ex.get_library_dir()}
    subprocess.run(["bash", str(EXAMPLES / "build.sh"), str(out)], check=True, env=env, capture_output=True)
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A small surrogate of reference problem 1a, exported."""
    avg = ms.AveragingEstimator(ms.AveragingOptions(dt=0.05, burn_in=10.0, time=200.0, batch=10.0),
                                seed=2).fit("fast_ou_linear", np.linspace(-2.5, 2.5, 41)).result_
    opts = SurrogateOptions(members=4, hidden=(16, 16), epochs=400, lbfgs_steps=300, seed=1)
    sde = EffectiveSDEEstimator(opts).fit(avg).fetch_model()
    path = ex.export_surrogate(sde, tmp_path_factory.mktemp("export") / "p1a.mss")
    return sde, path


def _parse(text: str, m: int) -> dict[str, np.ndarray]:
    rows: dict[str, list] = {"drift": [], "diffusion": [], "noise": []}
    for line in text.splitlines():
        key, *vals = line.split()
        rows[key].append([float(v) for v in vals])
    return {"drift": np.array(rows["drift"]), "diffusion": np.array(rows["diffusion"]).reshape(-1, m, m),
            "noise": np.array(rows["noise"]).reshape(-1, m, m)}


# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("gradient", [False, True])
@pytest.mark.parametrize("form", list(DiffusionForm))
@pytest.mark.parametrize("m", [1, 2, 3])
def test_c_api_matches_python(capi, tmp_path, m, form, gradient):
    sde = _model(m, form, gradient, seed=m)
    path = ex.export_surrogate(sde, tmp_path / "s.mss")
    with capi(path) as c:
        assert c.dim == m and c.members == 4 and c.names == sde.names
        x = np.random.default_rng(m).normal(size=(64, m)) * 2
        for member in (-1, 0, 3):
            kw = {} if member < 0 else {"member": member}
            _close(c.drift(x, member), sde.drift(x, **kw))
            _close(c.diffusion(x, member), sde.diffusion(x, **kw))
            _close(c.noise(x, member), sde.noise(x, **kw))


def test_c_api_argument_errors(capi, tmp_path):
    path = ex.export_surrogate(_model(2, DiffusionForm.CHOLESKY, False), tmp_path / "s.mss")
    c = capi(path)
    with pytest.raises(ValueError, match="returned 4: .*member = 4"):
        c.drift(np.zeros((3, 2)), 4)
    x = np.zeros((3, 2))
    x[1, 1] = np.nan
    with pytest.raises(ValueError, match=r"x\[1\]\[1\] is not finite"):
        c.diffusion(x)
    assert c.drift(np.zeros((0, 2))).shape == (0, 2)
    assert c._L.ms_surrogate_drift(None, None, 1, -1, None) == 4 and "null surrogate" in c.last_error()
    assert c._L.ms_surrogate_format_version() == ex.FORMAT_VERSION
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.drift(np.zeros((1, 2)))


@pytest.mark.parametrize("m, form, gradient", [(1, DiffusionForm.SCALAR, False), (2, DiffusionForm.CHOLESKY, True)])
def test_c_and_cpp_programs_match_python(programs, tmp_path, m, form, gradient):
    sde = _model(m, form, gradient, seed=7)
    path = ex.export_surrogate(sde, tmp_path / "s.mss")
    x = np.random.default_rng(3).normal(size=(20, m))
    states = f"{x.shape[0]}\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in x)
    for member in (-1, 1):
        kw = {} if member < 0 else {"member": member}
        for cmd in ([str(programs / "evaluate_c"), str(path), str(member)],
                    [str(programs / "euler_maruyama"), "--eval", str(path), str(member)]):
            r = subprocess.run(cmd, input=states, capture_output=True, text=True, check=True)
            got = _parse(r.stdout, m)
            _close(got["drift"], sde.drift(x, **kw))
            _close(got["diffusion"], sde.diffusion(x, **kw))
            _close(got["noise"], sde.noise(x, **kw))


def test_python_reader_round_trip_is_bitwise(tmp_path):
    sde = _model(2, DiffusionForm.DIAGONAL, True, seed=3)
    sde.provenance = {"pathway": "estimates", "nested": {"a": [1, 2]}}
    back = ex.load_export(ex.export_surrogate(sde, tmp_path / "s.mss"))
    x = np.random.default_rng(0).normal(size=(10, 2))
    np.testing.assert_array_equal(back.drift(x), sde.drift(x))
    np.testing.assert_array_equal(back.diffusion(x), sde.diffusion(x))
    assert back.provenance == sde.provenance and back.names == sde.names
    head, arrays, meta = ex.read_export(tmp_path / "s.mss")
    assert head["dim"] == "2" and meta["config"]["gradient"] is True
    assert not list(tmp_path.glob(".*.tmp"))


# ----------------------------------------------------------------------------------------------
# Malformed files are refused by every loader, with a message naming the problem
# ----------------------------------------------------------------------------------------------

def _corruptions(good: bytes) -> dict[str, tuple[bytes, str]]:
    end = good.index(b"\nend_header\n") + len(b"\nend_header\n")
    flipped = bytearray(good)
    flipped[end + 40] ^= 0x01
    header_edit = good.replace(b"members 4", b"members 5", 1)
    # A version-2 file with a consistent header checksum: refused for its version.
    body = good[:end].split(b"header_crc32 ")[0].replace(b"MSSURROGATE 1", b"MSSURROGATE 2", 1)
    v2 = body + f"header_crc32 {zlib.crc32(body):08x}\nend_header\n".encode() + good[end:]
    return {
        "truncated in the payload": (good[: end + 100], "truncated"),
        "truncated in the header": (good[:40], "header"),
        "one byte of the weights flipped": (bytes(flipped), "checksum"),
        "header edited": (header_edit, "header checksum"),
        "version 2": (v2, "version"),
        "garbage": (b"\x89HDF\r\n\x1a\n" + bytes(200), "not a multiscale"),
        "empty": (b"", "not a multiscale"),
        "padded": (good + b"\0" * 8, "padded"),
    }


def test_malformed_files_are_refused_by_every_loader(capi, programs, tmp_path):
    good = ex.export_surrogate(_model(2, DiffusionForm.CHOLESKY, False), tmp_path / "good.mss").read_bytes()
    for label, (data, match) in _corruptions(good).items():
        p = tmp_path / "bad.mss"
        p.write_bytes(data)
        with pytest.raises(ex.ExportFormatError, match=match):
            ex.read_export(p)
        with pytest.raises(ValueError) as info:
            capi(p)
        err = str(info.value)
        assert match.split()[0] in err and str(p) in err, (label, err)
        for cmd in ([str(programs / "evaluate_c"), str(p), "-1"], [str(programs / "euler_maruyama"), str(p)]):
            r = subprocess.run(cmd, input="0\n", capture_output=True, text=True)
            assert r.returncode == 1 and "error" in r.stderr and match.split()[0] in r.stderr, (label, r.stderr)
    with pytest.raises(ValueError, match="cannot open"):
        capi(tmp_path / "missing.mss")
    with pytest.raises(FileNotFoundError, match="missing.mss"):
        ex.read_export(tmp_path / "missing.mss")


def test_export_bad_input(tmp_path):
    sde = _model(1, DiffusionForm.SCALAR, False)
    with pytest.raises(ValueError, match="does not exist"):
        ex.export_surrogate(sde, tmp_path / "no" / "s.mss")
    bad = EffectiveSDE(1, members=2, names=["x y"])
    with pytest.raises(ValueError, match="cannot be exported"):
        ex.export_surrogate(bad, tmp_path / "s.mss")


# ----------------------------------------------------------------------------------------------
# The examples: C++ Euler-Maruyama statistics and the SciPy integration
# ----------------------------------------------------------------------------------------------

@pytest.mark.slow  # a statistical check over a long C++ run
def test_cpp_example_statistics_match_python_simulation(programs, trained):
    sde, path = trained
    n_cpp, n_py = 4000, 4000
    r = subprocess.run([str(programs / "euler_maruyama"), str(path), str(n_cpp), "300", "0.01", "7", "0.5"],
                       capture_output=True, text=True, check=True)
    vals = dict((line.split()[0], float(line.split()[2])) for line in r.stdout.splitlines())
    ds = sde.simulate(t_end=3.0, dt=0.01, x0=0.5, n_paths=n_py, seed=3)
    xp = ds.trajectory.values[:, -1, 0]
    mp, vp = xp.mean(), xp.var(ddof=1)
    se_mean = math.sqrt(vp / n_cpp + vp / n_py)
    se_var = vp * math.sqrt(2 / n_cpp + 2 / n_py)
    assert abs(vals["mean"] - mp) < 4 * se_mean, (vals, mp, se_mean)
    assert abs(vals["var"] - vp) < 4 * se_var, (vals, vp, se_var)


def test_scipy_example_reaches_the_wells(trained):
    _, path = trained
    r = subprocess.run([sys.executable, str(EXAMPLES / "scipy_solve_ivp.py"), str(path), "--lib", ex.get_library(),
                        "--x0", "-2", "-0.3", "0.3", "2", "--t", "30"], capture_output=True, text=True, check=True)
    final = [float(line.split()[-1]) for line in r.stdout.splitlines()]
    np.testing.assert_allclose(final, [-math.sqrt(1.5), -math.sqrt(1.5), math.sqrt(1.5), math.sqrt(1.5)], atol=0.02)


def test_cmake_package_of_the_installed_library(tmp_path, trained):
    """find_package(multiscale) in a downstream CMake project (installed package only)."""
    try:
        cmake_dir = ex.get_cmake_dir()
    except FileNotFoundError:
        pytest.skip("multiscale is not installed (source checkout): the CMake package comes with pip install")
    if shutil.which("cmake") is None:  # pragma: no cover
        pytest.skip("cmake not found")
    build = tmp_path / "b"
    subprocess.run(["cmake", "-S", str(EXAMPLES / "cpp"), "-B", str(build), f"-Dmultiscale_DIR={cmake_dir}"],
                   check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], check=True, capture_output=True)
    sde, path = trained
    x = np.array([[0.3], [-1.1]])
    r = subprocess.run([str(build / "evaluate_c"), str(path), "-1"], input="2\n0.3\n-1.1\n",
                       capture_output=True, text=True, check=True)
    _close(_parse(r.stdout, 1)["drift"], sde.drift(x))


# ----------------------------------------------------------------------------------------------
# PyTorch: TorchScript and torch.export, loadable without multiscale
# ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("m, form, gradient", [(1, DiffusionForm.SCALAR, False), (2, DiffusionForm.CHOLESKY, False),
                                               (3, DiffusionForm.DIAGONAL, False), (1, DiffusionForm.CHOLESKY, True),
                                               (2, DiffusionForm.SCALAR, True)])
def test_torch_exports_match_python_and_load_without_multiscale(tmp_path, m, form, gradient):
    sde = _model(m, form, gradient, seed=5)
    ts_path = ex.export_torchscript(sde, tmp_path / "s.pt")
    pt2_path = ex.export_torch_program(sde, tmp_path / "s.pt2")
    x = np.random.default_rng(1).normal(size=(33, m)) * 2
    np.save(tmp_path / "x.npy", x)
    # A fresh interpreter in which importing multiscale fails: the files must not need it.
    code = f"""
import sys
sys.modules["multiscale"] = None
import numpy as np, torch
try:
    import multiscale
    raise SystemExit("multiscale importable")
except ImportError:
    pass
x = torch.as_tensor(np.load({str(tmp_path / 'x.npy')!r}))
ts = torch.jit.load({str(ts_path)!r})
prog = torch.export.load({str(pt2_path)!r}).module()
with torch.no_grad():
    out = [ts.drift(x), ts.diffusion(x), ts.noise(x), ts.members_drift(x), *prog(x), *prog(x[:1])]
np.savez({str(tmp_path / 'out.npz')!r}, *[o.numpy() for o in out])
print(ts.config_json)
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert '"format": "multiscale.EffectiveSDE"' in r.stdout
    out = np.load(tmp_path / "out.npz")
    got = [out[f"arr_{i}"] for i in range(len(out.files))]
    _close(got[0], sde.drift(x))
    _close(got[1], sde.diffusion(x))
    _close(got[2], sde.noise(x))
    _close(got[3], sde.members_drift(x))
    _close(got[4], sde.drift(x))
    _close(got[5], sde.diffusion(x))
    _close(got[6], sde.drift(x[:1]))


def test_torch_export_bad_path(tmp_path):
    sde = _model(1, DiffusionForm.SCALAR, False)
    for fn in (ex.export_torchscript, ex.export_torch_program):
        with pytest.raises(ValueError, match="does not exist"):
            fn(sde, tmp_path / "missing" / "s.pt")


def test_c_api_refuses_a_directory_naming_it(capi, tmp_path):
    with pytest.raises(ValueError, match=f"cannot open surrogate file '{tmp_path}': not a regular file"):
        capi(tmp_path)
