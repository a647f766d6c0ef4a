"""Saving and loading a learned effective SDE: exact round trips, atomic writes, and refusal of
truncated, corrupted, tampered, unsafe or incompatible files."""
from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")
h5py = pytest.importorskip("h5py")

from multiscale.surrogate._io import (  # noqa: E402
    SurrogateFormatError, _checksum, load_surrogate, save_surrogate)
from multiscale.surrogate._model import FORMAT_VERSION, EffectiveSDE  # noqa: E402
from multiscale.surrogate._options import DiffusionForm  # noqa: E402

ARCHS = {
    "cholesky-m2": dict(dim=2, members=3, hidden=(8, 6), diffusion=DiffusionForm.CHOLESKY),
    "diagonal-gradient-m2": dict(dim=2, members=4, hidden=(7,), diffusion=DiffusionForm.DIAGONAL,
                                 gradient=True),
    "scalar-m1": dict(dim=1, members=3, hidden=(8,), diffusion=DiffusionForm.SCALAR),
}
PICKLE_CALLS: list[str] = []


def _record(msg: str) -> str:
    PICKLE_CALLS.append(msg)
    return msg


class _Evil:
    def __reduce__(self):
        return (_record, ("unpickled!",))


def _model(dim=1, seed=5, **kw) -> EffectiveSDE:
    kw.setdefault("members", 3)
    kw.setdefault("hidden", (8,))
    model = EffectiveSDE(dim, seed=seed, names=[f"q{i}" for i in range(dim)], **kw)
    rng = np.random.default_rng(seed)
    with torch.no_grad():  # move every parameter away from its initial value
        for p in model.parameters():
            p.add_(torch.as_tensor(rng.normal(scale=0.3, size=tuple(p.shape))))
    model.set_scaling(rng.normal(size=dim), rng.uniform(0.5, 2, dim), rng.normal(size=dim),
                      rng.uniform(0.5, 2, dim), rng.uniform(0.5, 2, dim), -5 - rng.random(dim), 5.0)
    model.provenance = {"data": {"n": 1000, "lags": [0.1, 0.2], "nested": {"ok": True, "none": None}},
                        "note": "héllo"}
    model.units = {"state": "nm", "time": "ps"}
    return model


def _points(dim):
    return np.random.default_rng(0).normal(size=(17, dim)) * 1.5


@pytest.fixture
def saved(tmp_path):
    model = _model(2, diffusion=DiffusionForm.CHOLESKY)
    return model, save_surrogate(model, tmp_path / "model.h5")


def _reseal(path):
    """Recompute the checksum as an attacker who knows the format would."""
    with h5py.File(path, "r+") as f:
        arrays = {k: f["arrays"][k][()] for k in f["arrays"]}
        f.attrs["sha256"] = _checksum(f.attrs["config_json"], arrays)


def _same(a, b):
    a, b = np.asarray(a), np.asarray(b)
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("arch", list(ARCHS))
def test_round_trip_is_bitwise(tmp_path, arch):
    kw = dict(ARCHS[arch])
    model = _model(kw.pop("dim"), **kw)
    loaded = load_surrogate(save_surrogate(model, tmp_path / "m.h5"))
    x = _points(model.dim)
    assert _same(model.drift(x), loaded.drift(x))
    assert _same(model.diffusion(x), loaded.diffusion(x))
    assert _same(model.members_drift(x), loaded.members_drift(x))
    if model.gradient:
        assert _same(model.potential(x), loaded.potential(x))
    a, b = model.state_arrays(), loaded.state_arrays()
    assert sorted(a) == sorted(b) and all(_same(a[k], b[k]) for k in a)
    assert loaded.config() == model.config()
    assert json.dumps(loaded.config(), sort_keys=True) == json.dumps(model.config(), sort_keys=True)


def test_config_and_attributes_preserved(saved):
    model, path = saved
    loaded = load_surrogate(str(path))
    assert loaded.names == ("q0", "q1")
    assert loaded.provenance == model.provenance
    assert loaded.provenance["data"]["nested"] == {"ok": True, "none": None}
    assert loaded.units == {"state": "nm", "time": "ps"}
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "multiscale.EffectiveSDE"
        assert int(f.attrs["format_version"]) == FORMAT_VERSION
        assert isinstance(f.attrs["package_version"], str)
        assert json.loads(f.attrs["config_json"]) == model.config()
        assert all(f["arrays"][k].dtype.kind == "f" for k in f["arrays"])


def test_save_is_atomic_and_overwrites(tmp_path, monkeypatch):
    path = tmp_path / "m.h5"
    first, second = _model(1, seed=1), _model(1, seed=2)
    assert save_surrogate(first, path) == path
    save_surrogate(second, path)
    assert os.listdir(tmp_path) == ["m.h5"]
    x = _points(1)
    assert _same(load_surrogate(path).drift(x), second.drift(x))

    import multiscale.surrogate._io as io

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(io, "_checksum", boom)  # fail in the middle of writing
    with pytest.raises(RuntimeError, match="disk full"):
        save_surrogate(first, path)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["m.h5"]  # no temp file left, old file intact
    assert _same(load_surrogate(path).drift(x), second.drift(x))


def test_truncated_file_refused(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    for cut in (0, 7, 100, 600, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.h5"
        bad.write_bytes(data[:cut])
        with pytest.raises(SurrogateFormatError, match=f"cut{cut}"):
            load_surrogate(bad)


def test_flipped_byte_in_array_refused(saved):
    _, path = saved
    with h5py.File(path, "r") as f:
        ds = f["arrays"]["drift_net.weights.0"]
        offset = ds.id.get_offset() + ds.nbytes // 2
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(SurrogateFormatError, match="checksum mismatch: the file was modified or corrupted"):
        load_surrogate(path)


def test_tampered_config_refused(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["config_json"])
        cfg["hidden"] = [9, 6]
        f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
    with pytest.raises(SurrogateFormatError, match="checksum mismatch"):
        load_surrogate(path)


def test_wrong_format_version_refused(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.int64(FORMAT_VERSION + 41)
    with pytest.raises(SurrogateFormatError, match=f"format_version {FORMAT_VERSION + 41}.*{FORMAT_VERSION}"):
        load_surrogate(path)


@pytest.mark.parametrize("fmt", ["multiscale.Other", np.int64(3), np.array([b"a", b"b"]), None])
def test_wrong_format_refused(saved, fmt):
    _, path = saved
    with h5py.File(path, "r+") as f:
        if fmt is None:
            del f.attrs["format"]
        else:
            f.attrs["format"] = fmt
    with pytest.raises(SurrogateFormatError, match="is not a multiscale.EffectiveSDE file"):
        load_surrogate(path)


def test_other_package_version_and_fixed_length_strings_allowed(saved):
    model, path = saved
    with h5py.File(path, "r+") as f:
        f.attrs["package_version"] = "999.0"
        for k in ("format", "config_json", "sha256"):  # as a C or Fortran writer might store them
            f.attrs[k] = np.bytes_(f.attrs[k].encode())
        assert isinstance(f.attrs["config_json"], np.bytes_)
    x = _points(2)
    assert _same(load_surrogate(path).drift(x), model.drift(x))


@pytest.mark.parametrize("kind", ["pickle", "vlen", "object-ref"])
def test_unsafe_dataset_refused(saved, kind):
    _, path = saved
    PICKLE_CALLS.clear()
    with h5py.File(path, "r+") as f:
        g = f["arrays"]
        if kind == "pickle":
            g["evil"] = np.void(pickle.dumps(_Evil()))
        elif kind == "vlen":
            g.create_dataset("evil", data=["a", "bc"], dtype=h5py.string_dtype())
        else:
            g.create_dataset("evil", data=[g["x_mean"].ref], dtype=h5py.ref_dtype)
    with pytest.raises(SurrogateFormatError, match="evil"):
        load_surrogate(path)
    assert PICKLE_CALLS == []


def test_links_refused(saved, tmp_path):
    _, path = saved
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = np.zeros(2)
    with h5py.File(path, "r+") as f:
        del f["arrays"]["x_mean"]
        f["arrays"]["x_mean"] = h5py.ExternalLink(str(other), "x")
    with pytest.raises(SurrogateFormatError, match="link"):
        load_surrogate(path)


def test_garbage_and_foreign_hdf5_refused(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(np.random.default_rng(1).bytes(4096))
    with pytest.raises(SurrogateFormatError, match="junk.h5"):
        load_surrogate(junk)
    text = tmp_path / "text.h5"
    text.write_text("not hdf5 at all\n")
    with pytest.raises(SurrogateFormatError, match="text.h5"):
        load_surrogate(text)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3.0)
    with pytest.raises(SurrogateFormatError, match="foreign.h5"):
        load_surrogate(foreign)
    with pytest.raises(SurrogateFormatError):
        load_surrogate(tmp_path)  # a directory


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        load_surrogate(tmp_path / "nope.h5")


def test_consistent_checksum_with_wrong_shape_refused(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        del f["arrays"]["x_mean"]
        f["arrays"]["x_mean"] = np.zeros(3)
    _reseal(path)
    with pytest.raises(SurrogateFormatError, match="x_mean"):
        load_surrogate(path)


def test_consistent_checksum_with_missing_array_refused(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        del f["arrays"]["confine"]
    _reseal(path)
    with pytest.raises(SurrogateFormatError, match="confine"):
        load_surrogate(path)


def test_huge_architecture_refused_before_allocation(saved):
    _, path = saved
    with h5py.File(path, "r+") as f:
        cfg = json.loads(f.attrs["config_json"])
        cfg["members"], cfg["hidden"] = 10**6, [10**6, 10**6]
        f.attrs["config_json"] = json.dumps(cfg, sort_keys=True)
    _reseal(path)
    with pytest.raises(SurrogateFormatError, match="architecture"):
        load_surrogate(path)


def test_big_endian_arrays_load(saved):
    model, path = saved
    with h5py.File(path, "r+") as f:
        for k in list(f["arrays"]):
            a = f["arrays"][k][()]
            del f["arrays"][k]
            f["arrays"].create_dataset(k, data=a.astype(">f8"))
    _reseal(path)
    x = _points(2)
    assert _same(load_surrogate(path).drift(x), model.drift(x))


def test_loading_never_unpickles(saved, monkeypatch):
    model, path = saved

    def refuse(*a, **k):
        raise AssertionError("load_surrogate must not unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    x = _points(2)
    assert _same(load_surrogate(path).diffusion(x), model.diffusion(x))
