"""Export of hybrid ring surrogates (:class:`LocalEffectiveSDE`, ``dX = [R(X) + U(X)] dt + S(X) dW``):
the portable file (format version 2, ``kind ring``), the resolved drift's stack program, the C API
(U, S, R and the total drift, per member and ensemble mean), Fortran, TorchScript and torch.export,
all against the Python model to 1e-12; bad inputs and damaged files give clear errors."""
from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import multiscale as ms  # noqa: E402
import multiscale.export as ex  # noqa: E402
from multiscale.export._program import compile_resolved  # noqa: E402
from multiscale.surrogate import EffectiveSDE  # noqa: E402
from multiscale.surrogate._local import LocalEffectiveSDE  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FORTRAN_MODULE = ROOT / "examples" / "downstream" / "fortran" / "multiscale_surrogate.f90"
K = 6


def _close(got, ref, what: str = "") -> None:
    """Agreement to 1e-12 relative to the array's scale (float64 evaluation orders differ)."""
    ref = np.asarray(ref, dtype=float)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12 * max(float(np.abs(ref).max()), 1e-300),
                               err_msg=what)


def _l96() -> ms.Model:
    return ms.Model("l96_resolved", slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F"},
                    params={"K": K, "F": 8.0}, sizes={"X": "K"})


def _rich() -> ms.Model:
    """Every construct the program compiler lowers: a scalar variable beside the vector, periodic
    indices, sums with lane-dependent bounds and a constant body, index values, functions, pow."""
    return ms.Model("rich", slow={
        "X[k]": "sin(X[k])*exp(-X[k+1]^2/2) + sum(X[j]*j, j, 0, k) + 2^(X[k-1]/4) + atan2(X[k], 1.5)"
                " + min(X[k], 0) + max(y, X[k]) + k*a + sum(a, j, k, K) - sqrt(abs(X[k])) + tanh(y)*cos2pi(X[k])",
        "y": "-y + X[0]*a + log1p(X[1]^2) + erf(y)"},
        params={"K": K - 1, "a": 0.3}, sizes={"X": "K"})


def _ring(resolved: ms.Model | None = None, params: dict | None = None, seed: int = 3) -> LocalEffectiveSDE:
    """A small ring surrogate with perturbed weights (so every network output matters)."""
    m = LocalEffectiveSDE(K, stencil=1, members=3, hidden=(8,), resolved=resolved, resolved_params=params, seed=seed)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.4 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    m.set_scaling(0.5, 2.0, 0.3, 1.7, 0.4)
    m.provenance = {"pathway": "trajectories", "lag": 0.005}
    return m


@pytest.fixture(scope="module")
def model() -> LocalEffectiveSDE:
    return _ring(_l96(), {"F": 10.0})


@pytest.fixture(scope="module")
def states() -> np.ndarray:
    return np.random.default_rng(0).normal(3.0, 4.0, size=(17, K))


@pytest.fixture(scope="module")
def capi():
    try:
        ex.get_library()
    except FileNotFoundError as err:  # pragma: no cover - a source tree without a build
        pytest.skip(f"libmultiscale_surrogate is not available: {err}")
    return ex.CSurrogate


def _reference(model: LocalEffectiveSDE, x: np.ndarray, member: int) -> dict[str, np.ndarray]:
    """The Python model's U, S, R, R + U and A for one member (or the ensemble means)."""
    U = model.members_unresolved(x)
    A = model.members_diffusion(x)
    S = np.sqrt(np.diagonal(A, axis1=-2, axis2=-1))
    R = model.resolved_drift(torch.as_tensor(x)).numpy()
    if member < 0:
        return {"U": U.mean(0), "S": np.sqrt((S * S).mean(0)), "R": R, "drift": model.drift(x),
                "diffusion": model.diffusion(x)}
    return {"U": U[member], "S": S[member], "R": R, "drift": model.members_drift(x)[member], "diffusion": A[member]}


# ----------------------------------------------------------------------------------------------
# The portable file

def test_round_trip_is_bitwise_and_names_the_resolved_model(model, states, tmp_path):
    path = ex.export_surrogate(model, tmp_path / "ring.mss")
    head, arrays, meta = ex.read_export(path)
    assert head["version"] == 2 and head["kind"] == "ring" and head["stencil"] == "1" and head["resolved"] == "1"
    assert head["dim"] == str(K) and head["names"].split() == list(model.names)
    assert arrays["drift_net.weights.0"].shape == (3, 3, 8) and arrays["resolved.code"].shape[1] == 2
    back = ex.load_export(path)
    assert isinstance(back, LocalEffectiveSDE) and back.provenance == model.provenance
    np.testing.assert_array_equal(back.members_drift(states), model.members_drift(states))
    np.testing.assert_array_equal(back.members_diffusion(states), model.members_diffusion(states))
    # The resolved model's definition travels as text (TOML) that reads back to the same model.
    toml = tmp_path / "resolved.toml"
    toml.write_text(meta["resolved_toml"])
    assert ms.models.load_model_file(toml) == model.resolved and meta["resolved_params"] == {"F": 10.0}
    assert not list(tmp_path.glob(".*.tmp"))


def test_ring_without_resolved_part_and_old_files_still_read(capi, states, tmp_path):
    bare = _ring(None)
    path = ex.export_surrogate(bare, tmp_path / "bare.mss")
    head, arrays, _ = ex.read_export(path)
    assert head["resolved"] == "0" and not any(k.startswith("resolved.") for k in arrays)
    np.testing.assert_array_equal(ex.load_export(path).drift(states), bare.drift(states))
    with capi(path) as c:
        assert c.kind == "ring" and not c.has_resolved
        np.testing.assert_array_equal(c.resolved(states), 0.0)
        _close(c.drift(states), bare.drift(states))
    # An EffectiveSDE is still written as version 1 (readable by every earlier reader) and read.
    sde = EffectiveSDE(2, members=2, hidden=(4,))
    p1 = ex.export_surrogate(sde, tmp_path / "sde.mss")
    assert p1.read_bytes().startswith(b"MSSURROGATE 1\n")
    assert ex.read_export(p1)[0]["kind"] == "sde"
    with capi(p1) as c:
        assert c.kind == "sde" and c.stencil == -1
        _close(c.drift(states[:, :2]), sde.drift(states[:, :2]))
        with pytest.raises(ValueError, match="not a ring"):
            c.closure(states[:, :2])
    assert ex.check_export(sde, p1, states[:, :2]) < 1e-12
    with pytest.raises(ValueError, match="ring"):  # the file does not hold this model
        ex.check_export(bare, p1, states)


# ----------------------------------------------------------------------------------------------
# The resolved drift's program

@pytest.mark.parametrize("make", [_l96, _rich])
def test_program_reproduces_the_model_language(make):
    resolved = make()
    x = np.random.default_rng(1).normal(size=(9, K)) * 2
    prog = compile_resolved(resolved)
    ref = resolved.torch_functions().slow_drift(torch.as_tensor(x)).numpy()
    _close(prog.evaluate(x), ref)
    assert prog.max_stack >= 2 and prog.equations.shape[1] == 4


def test_program_refuses_fast_variables():
    full = ms.Model("two", slow={"x": "-x + y"}, fast={"y": "-y"}, fast_noise={"y": "1"})
    with pytest.raises(ValueError, match="fast variables"):
        compile_resolved(full)


# ----------------------------------------------------------------------------------------------
# C API

@pytest.mark.parametrize("make", [_l96, _rich])
def test_c_api_matches_python(capi, make, states, tmp_path):
    model = _ring(make(), None, seed=5)
    path = ex.export_surrogate(model, tmp_path / "ring.mss")
    with capi(path) as c:
        assert (c.kind, c.dim, c.members, c.stencil, c.has_resolved) == ("ring", K, 3, 1, True)
        assert c.names == model.names
        for member in (-1, 0, 2):
            ref = _reference(model, states, member)
            u, s = c.closure(states, member)
            _close(u, ref["U"], f"U {member}")
            _close(s, ref["S"], f"S {member}")
            _close(c.resolved(states), ref["R"], "R")
            _close(c.drift(states, member), ref["drift"], f"R + U {member}")
            _close(c.diffusion(states, member), ref["diffusion"], f"A {member}")
            _close(c.noise(states, member), np.sqrt(ref["diffusion"]), f"noise {member}")
    assert ex.check_export(model, path, states) < 1e-12


def test_c_api_is_shift_equivariant(capi, model, states, tmp_path):
    path = ex.export_surrogate(model, tmp_path / "ring.mss")
    with capi(path) as c:
        b, bs = c.drift(states), c.drift(np.roll(states, 2, axis=1))
        np.testing.assert_array_equal(np.roll(b, 2, axis=1), bs)


def test_c_api_bad_inputs(capi, model, states, tmp_path):
    path = ex.export_surrogate(model, tmp_path / "ring.mss")
    c = capi(path)
    with pytest.raises(ValueError, match="expected"):
        c.closure(np.zeros((3, K + 1)))
    with pytest.raises(ValueError, match="returned 4: .*member = 3"):
        c.closure(states, 3)
    x = states.copy()
    x[2, 4] = np.inf
    with pytest.raises(ValueError, match=r"x\[2\]\[4\] is not finite"):
        c.resolved(x)
    L, h, xp = c._L, c._h, states.ctypes.data
    out = np.empty_like(states)
    assert L.ms_surrogate_ring_closure(None, xp, 1, -1, out.ctypes.data, None) == 4
    assert "null surrogate" in c.last_error()
    assert L.ms_surrogate_ring_closure(h, xp, 1, -1, None, None) == 4 and "both null" in c.last_error()
    assert L.ms_surrogate_ring_resolved(h, xp, -1, out.ctypes.data) == 4 and "< 0" in c.last_error()
    assert L.ms_surrogate_ring_closure(h, xp, 2, -1, None, out.ctypes.data) == 0  # S alone
    _close(out[:2], _reference(model, states[:2], -1)["S"])
    assert (L.ms_surrogate_kind(None), L.ms_surrogate_stencil(None), L.ms_surrogate_has_resolved(None)) == (-1,) * 3
    assert c.closure(np.zeros((0, K)))[0].shape == (0, K)
    c.close()
    with pytest.raises(ValueError, match="closed"):
        c.closure(states)


def _rewrite(good: bytes, array: str, edit) -> bytes:
    """``good`` with one array edited in place by ``edit(values)``, every checksum made consistent
    again (so only the reader's own checks of the content can refuse it)."""
    end = good.index(b"\nend_header\n") + len(b"\nend_header\n")
    off, data = end, bytearray(good)
    for line in good[:end].decode().splitlines():
        if line.startswith("array "):
            name, _, *shape = line.split()[1:]
            n = int(np.prod([int(d) for d in shape], dtype=np.int64))
            if name == array:
                vals = np.frombuffer(good, "<f8", n, off).copy()
                edit(vals)
                data[off:off + 8 * n] = vals.astype("<f8").tobytes()
            off += 8 * n
    return _reseal(bytes(data))


def _reseal(data: bytes) -> bytes:
    """Recompute both checksums of a (hand-edited) file."""
    end = data.index(b"\nend_header\n") + len(b"\nend_header\n")
    payload = data[end:]
    text = data[:end].decode().split("payload_crc32 ")[0] + f"payload_crc32 {zlib.crc32(payload):08x}\n"
    return text.encode() + f"header_crc32 {zlib.crc32(text.encode()):08x}\nend_header\n".encode() + payload


def test_damaged_programs_and_kinds_are_refused(capi, model, tmp_path):
    good = ex.export_surrogate(model, tmp_path / "good.mss").read_bytes()
    cases = {
        "bad opcode": (_rewrite(good, "resolved.code", lambda v: v.__setitem__(0, 99.0)), "opcode"),
        "state index out of range": (_rewrite(good, "resolved.lanes", lambda v: v.__setitem__(0, float(K))),
                                     "state index"),
        "constant out of range": (_rewrite(good, "resolved.code", lambda v: v.__setitem__(slice(None), 1.0)),
                                  "operand out of range"),
        "stack underflow": (_rewrite(good, "resolved.code", lambda v: v.__setitem__(0, 5.0)), "underflow"),
        # equations (offset, lanes, start, length): one lane fewer leaves the last component unwritten
        "component not written": (_rewrite(good, "resolved.equations", lambda v: v.__setitem__(1, v[1] - 1)),
                                  "written 0 times"),
        "stencil too wide": (_reseal(good.replace(b"stencil 1", b"stencil 3")), "stencil"),
        "unknown kind": (_reseal(good.replace(b"kind ring", b"kind lattice")), "kind"),
    }
    for label, (data, match) in cases.items():
        p = tmp_path / "bad.mss"
        p.write_bytes(data)
        with pytest.raises(ValueError, match=match) as info:
            capi(p)
        assert str(p) in str(info.value), (label, info.value)
    with pytest.raises(ex.ExportFormatError, match="kind"):
        ex.read_export(p)


def test_export_refuses_bad_names(tmp_path):
    bad = LocalEffectiveSDE(3, stencil=1, members=1, hidden=(2,), names=["a b", "c", "d"])
    with pytest.raises(ValueError, match="cannot be exported"):
        ex.export_surrogate(bad, tmp_path / "s.mss")


# ----------------------------------------------------------------------------------------------
# Fortran

_FORTRAN_PROGRAM = """
program ring_eval
  use, intrinsic :: iso_c_binding, only: c_double
  use multiscale_surrogate
  implicit none
  type(surrogate_t) :: s
  integer :: ierr, n, k, i, member
  character(len=1024) :: path, arg
  character(len=:), allocatable :: msg
  real(c_double), allocatable :: x(:, :), u(:, :), sg(:, :), r(:, :), b(:, :)
  call get_command_argument(1, path)
  call get_command_argument(2, arg)
  read (arg, *) member
  call s%open(path, ierr, msg)
  if (ierr /= 0) then
    write (0, '(a)') msg
    stop 1
  end if
  k = s%dim()
  read (*, *) n
  allocate (x(k, n), u(k, n), sg(k, n), r(k, n), b(k, n))
  read (*, *) x
  write (*, '(a, 3(1x, i0), 1x, l1)') 'info', s%kind(), k, s%stencil(), s%has_resolved()
  call s%ring_closure(x, member, u, sg, ierr, msg)
  if (ierr == 0) call s%ring_resolved(x, r, ierr, msg)
  if (ierr == 0) call s%drift(x, member, b, ierr, msg)
  if (ierr /= 0) then
    write (0, '(a)') msg
    stop 2
  end if
  do i = 1, n
    write (*, '(a, *(1x, es25.17e3))') 'U', u(:, i)
    write (*, '(a, *(1x, es25.17e3))') 'S', sg(:, i)
    write (*, '(a, *(1x, es25.17e3))') 'R', r(:, i)
    write (*, '(a, *(1x, es25.17e3))') 'B', b(:, i)
  end do
  ! A wrongly shaped output is caught by the wrapper, not by the C library.
  if (n > 1) then
    call s%ring_closure(x, member, u(:, 1:1), sg, ierr, msg)
    write (*, '(a, 1x, i0, 1x, a)') 'shape', ierr, msg
  end if
  call s%close()
end program ring_eval
"""


@pytest.fixture(scope="module")
def fortran_program(capi, tmp_path_factory) -> Path:
    if shutil.which("gfortran") is None:
        pytest.skip("gfortran is not installed (e.g. apt-get install gfortran): the Fortran route is not tested")
    out = tmp_path_factory.mktemp("fortran-ring")
    (out / "ring_eval.f90").write_text(_FORTRAN_PROGRAM)
    libdir = ex.get_library_dir()
    flags = ["-O2", "-std=f2008", "-Wall", "-J", str(out)]
    r = subprocess.run(["gfortran", *flags, "-c", str(FORTRAN_MODULE), "-o", str(out / "m.o")], capture_output=True,
                       text=True, cwd=out)
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    r = subprocess.run(["gfortran", *flags, "-I", str(out), str(out / "ring_eval.f90"), str(out / "m.o"),
                        f"-L{libdir}", "-lmultiscale_surrogate", f"-Wl,-rpath,{libdir}", "-o", str(out / "ring_eval")],
                       capture_output=True, text=True, cwd=out)
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr
    return out / "ring_eval"


def test_fortran_ring_evaluation_matches_python(fortran_program, model, states, tmp_path):
    path = ex.export_surrogate(model, tmp_path / "ring.mss")
    text = f"{len(states)}\n" + "\n".join(" ".join(repr(float(v)) for v in row) for row in states) + "\n"
    for member in (-1, 1):
        r = subprocess.run([str(fortran_program), str(path), str(member)], input=text, capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        rows: dict[str, list] = {"U": [], "S": [], "R": [], "B": []}
        for line in r.stdout.splitlines():
            key, *vals = line.split()
            if key in rows:
                rows[key].append([float(v) for v in vals])
            elif key == "info":
                assert vals == ["1", str(K), "1", "T"], line
            else:
                assert key == "shape" and vals[0] == "4" and "wrong shape" in line, line
        ref = _reference(model, states, member)
        for key, name in (("U", "U"), ("S", "S"), ("R", "R"), ("B", "drift")):
            _close(np.array(rows[key]), ref[name], f"Fortran {key}, member {member}")
    r = subprocess.run([str(fortran_program), str(tmp_path / "missing.mss"), "-1"], input="0\n",
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "missing.mss" in r.stderr, r.stderr


# ----------------------------------------------------------------------------------------------
# TorchScript and torch.export

def _check_module(module, model: LocalEffectiveSDE, x: np.ndarray) -> None:
    t = torch.as_tensor(x)
    b, a = module(t)
    _close(b.numpy(), model.drift(x), "drift")
    _close(a.numpy(), np.diagonal(model.diffusion(x), axis1=-2, axis2=-1), "diffusion")


def _jit_load(path: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit's own deprecation notice
        return torch.jit.load(str(path))


def test_torchscript_matches_python(model, states, tmp_path):
    m = _jit_load(ex.export_torchscript(model, tmp_path / "ring.pt"))
    _check_module(m, model, states)
    t = torch.as_tensor(states)
    _close(m.members_drift(t).numpy(), model.members_drift(states))
    _close(m.members_unresolved(t).numpy(), model.members_unresolved(states))
    _close(m.unresolved(t).numpy(), model.members_unresolved(states).mean(0))
    _close(m.resolved(t).numpy(), model.resolved_drift(t).numpy())
    _close(m.diffusion(t).numpy(), model.diffusion(states))
    _close(m.noise_diagonal(t).numpy(), np.sqrt(np.diagonal(model.diffusion(states), axis1=-2, axis2=-1)))
    assert m.sites == K and m.stencil == 1 and '"resolved"' in m.config_json
    for other in (_ring(_rich(), None, seed=7), _ring(None)):
        _check_module(_jit_load(ex.export_torchscript(other, tmp_path / "other.pt")), other, states)


def test_torch_exports_load_without_multiscale(model, states, tmp_path):
    ts_path = ex.export_torchscript(model, tmp_path / "ring.pt")
    pt2_path = ex.export_torch_program(model, tmp_path / "ring.pt2")
    np.save(tmp_path / "x.npy", states)
    code = f"""
import sys, warnings
sys.modules["multiscale"] = None
warnings.simplefilter("ignore")
import numpy as np, torch
x = torch.as_tensor(np.load({str(tmp_path / 'x.npy')!r}))
ts = torch.jit.load({str(ts_path)!r})
prog = torch.export.load({str(pt2_path)!r}).module()
with torch.no_grad():
    out = [*ts(x), ts.members_drift(x), *prog(x), *prog(x[:1])]
np.savez({str(tmp_path / 'out.npz')!r}, *[o.numpy() for o in out])
"""
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = np.load(tmp_path / "out.npz")
    got = [out[f"arr_{i}"] for i in range(len(out.files))]
    diag = np.diagonal(model.diffusion(states), axis1=-2, axis2=-1)
    for g, ref in zip(got, [model.drift(states), diag, model.members_drift(states), model.drift(states), diag,
                            model.drift(states[:1])]):
        _close(g, ref)
