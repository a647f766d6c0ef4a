"""Saving and loading an :class:`EffectiveSDE` as one self-describing, checksummed HDF5 file.

Layout: root attributes ``format``, ``format_version``, ``package_version``, ``config_json``
and ``sha256``; every parameter and buffer is a plain numeric dataset in the group ``arrays``.
Loading never executes anything from the file (no pickle, no eval, no object or variable-length
dtypes, no external links or storage, no filter plugins), and the SHA-256 over the description
and the raw array bytes must match before any model is built.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
import secrets
from typing import Any, Mapping

import h5py
import numpy as np

from .._device import build_info
from .._errors import MultiscaleError, SurrogateFormatError
from ._model import FORMAT_VERSION, EffectiveSDE

FORMAT = "multiscale.EffectiveSDE"
LOCAL_FORMAT = "multiscale.LocalEffectiveSDE"  # hybrid local closures on a ring


def _kinds() -> dict[str, tuple[type, int]]:
    """The surrogate classes a file may hold: format name -> (class, format_version)."""
    from ._local import LocalEffectiveSDE

    return {FORMAT: (EffectiveSDE, FORMAT_VERSION), LOCAL_FORMAT: (LocalEffectiveSDE, 1)}
MAX_CONFIG_BYTES = 1 << 20
MAX_ARRAYS = 1000
MAX_ELEMENTS = 1 << 31  # per array, and in all
_BUILTIN_FILTERS = {1, 2, 3, 4, 5, 6}  # deflate, shuffle, fletcher32, szip, nbit, scaleoffset


def _checksum(config_json: str, arrays: Mapping[str, np.ndarray]) -> str:
    """Hex SHA-256 of the description and every array (name, dtype, shape, C-order bytes)."""
    h = hashlib.sha256()

    def feed(b: bytes | memoryview) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    feed(config_json.encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        feed(name.encode("utf-8"))
        feed(a.dtype.str.encode("ascii"))
        feed(json.dumps(list(a.shape)).encode("ascii"))
        feed(memoryview(a).cast("B") if a.size else b"")
    return h.hexdigest()


def save_surrogate(model: EffectiveSDE, path: str | os.PathLike[str]) -> pathlib.Path:
    """Write ``model`` to ``path`` (HDF5), atomically replacing any existing file.

    Parameters
    ----------
    model : EffectiveSDE
    path : str or path-like

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = pathlib.Path(path)
    config_json = json.dumps(model.config(), sort_keys=True)
    arrays = {k: np.ascontiguousarray(v) for k, v in model.state_arrays().items()}
    if any("/" in k or not k for k in arrays):
        raise ValueError(f"array names {sorted(arrays)} must be non-empty and contain no '/'")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        with h5py.File(tmp, "w") as f:
            cfg = model.config()
            f.attrs["format"] = cfg["format"]
            f.attrs["format_version"] = np.int64(cfg["format_version"])
            f.attrs["package_version"] = str(build_info().get("version", ""))
            f.attrs["config_json"] = config_json
            f.attrs["sha256"] = _checksum(config_json, arrays)
            grp = f.create_group("arrays")
            for k in sorted(arrays):
                grp.create_dataset(k, data=arrays[k])
        fd = os.open(tmp, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename durable (POSIX; best effort)
        try:
            dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    return path


def _read_array(grp: h5py.Group, name: str, where: str) -> np.ndarray:
    """One dataset as a native-byte-order NumPy array, after checking it is plain numeric data."""
    if not isinstance(grp.get(name, getlink=True), h5py.HardLink):
        raise SurrogateFormatError(f"{where}: arrays/{name} is a link, not a stored dataset")
    ds = grp[name]
    if not isinstance(ds, h5py.Dataset):
        raise SurrogateFormatError(f"{where}: arrays/{name} is not a dataset")
    dt = ds.dtype
    if dt.kind not in "fiu" or dt.hasobject or dt.fields is not None or dt.subdtype is not None \
            or h5py.check_vlen_dtype(dt) is not None:
        raise SurrogateFormatError(f"{where}: arrays/{name} has dtype {dt}; only real numeric dtypes are allowed")
    if ds.shape is None or len(ds.shape) > 32 or ds.size > MAX_ELEMENTS:
        raise SurrogateFormatError(f"{where}: arrays/{name} has an unsupported shape {ds.shape}")
    dcpl = ds.id.get_create_plist()
    if ds.is_virtual or dcpl.get_external_count() > 0 or any(
            dcpl.get_filter(i)[0] not in _BUILTIN_FILTERS for i in range(dcpl.get_nfilters())):
        raise SurrogateFormatError(f"{where}: arrays/{name} uses external, virtual or plugin storage")
    return np.asarray(ds[()])


def load_surrogate(path: str | os.PathLike[str]) -> EffectiveSDE:
    """Read a surrogate written by :func:`save_surrogate`, verifying format, version and checksum.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    EffectiveSDE

    Raises
    ------
    FileNotFoundError
        No file at ``path``.
    SurrogateFormatError
        Not an HDF5 surrogate file, an unsupported ``format_version``, a checksum mismatch
        (modified or corrupted file), unsafe content, or arrays that do not fit the architecture.
    """
    path = pathlib.Path(path)
    where = str(path)
    if not path.exists():
        raise FileNotFoundError(f"no surrogate file at {where}")
    try:
        with h5py.File(path, "r") as f:
            fmt = _text(f.attrs.get("format"))
            kinds = _kinds()
            if fmt not in kinds:
                raise SurrogateFormatError(f"{where} is not a {FORMAT} file (format={fmt!r})")
            cls, want = kinds[fmt]
            version = f.attrs.get("format_version")
            if isinstance(version, (bool, np.bool_)) or not isinstance(version, (int, np.integer)) \
                    or int(version) != want:
                shown = int(version) if isinstance(version, np.integer) else repr(version)
                raise SurrogateFormatError(f"{where} has format_version {shown}; this version of "
                                           f"multiscale reads format_version {want}")
            config_json, digest = _text(f.attrs.get("config_json")), _text(f.attrs.get("sha256"))
            if not isinstance(config_json, str) or len(config_json) > MAX_CONFIG_BYTES \
                    or not isinstance(digest, str):
                raise SurrogateFormatError(f"{where}: missing, oversized or non-string config_json/sha256")
            grp = f.get("arrays", getlink=True)
            if not isinstance(grp, h5py.HardLink) or not isinstance(f["arrays"], h5py.Group):
                raise SurrogateFormatError(f"{where}: no 'arrays' group")
            names = list(f["arrays"].keys())
            if len(names) > MAX_ARRAYS:
                raise SurrogateFormatError(f"{where}: {len(names)} arrays (at most {MAX_ARRAYS})")
            total = sum(f["arrays"][k].size or 0 for k in names
                        if isinstance(f["arrays"].get(k, getlink=True), h5py.HardLink)
                        and isinstance(f["arrays"][k], h5py.Dataset))
            if total > MAX_ELEMENTS:
                raise SurrogateFormatError(f"{where}: {total} array elements (at most {MAX_ELEMENTS})")
            arrays = {k: _read_array(f["arrays"], k, where) for k in names}
    except SurrogateFormatError:
        raise
    except (OSError, KeyError, RuntimeError, ValueError, TypeError) as err:
        raise SurrogateFormatError(f"{where} is not a readable HDF5 surrogate file: {err}") from None
    if _checksum(config_json, arrays) != digest:
        raise SurrogateFormatError(f"{where}: checksum mismatch: the file was modified or corrupted")
    try:
        config = json.loads(config_json)
    except (ValueError, RecursionError) as err:
        raise SurrogateFormatError(f"{where}: config_json is not valid JSON: {err}") from None
    if not isinstance(config, dict) or config.get("format") != fmt or config.get("format_version") != want:
        raise SurrogateFormatError(f"{where}: config_json is not a {fmt} v{want} description")
    _check_size(config, sum(a.size for a in arrays.values()), where)
    native = {k: np.array(a, dtype=a.dtype.newbyteorder("=")) for k, a in arrays.items()}
    try:
        return cls.from_config(config, native)
    except (ValueError, TypeError, RuntimeError, KeyError, MultiscaleError) as err:
        raise SurrogateFormatError(f"{where}: {err}") from None


def _text(value: Any) -> str | None:
    """A string attribute (variable- or fixed-length, UTF-8), or None for anything else."""
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _check_size(config: Mapping[str, Any], stored: int, where: str) -> None:
    """Refuse a description whose network needs more weights than the file stores, before it is
    built (a crafted, consistently checksummed file must not make us allocate a huge model)."""
    members, hidden = config.get("members"), config.get("hidden")
    if config.get("format") == LOCAL_FORMAT:  # the shared networks see a stencil of 2 s + 1 sites
        s = config.get("stencil")
        dim = 2 * s + 1 if isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= 16 else None
    else:
        dim = config.get("dim")
    ints = [dim, members, *(hidden if isinstance(hidden, list) else [None])]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in ints):
        raise SurrogateFormatError(f"{where}: invalid dim/stencil/members/hidden in config_json")
    sizes = (dim, *hidden, 1)
    if members * sum(a * b for a, b in zip(sizes[:-1], sizes[1:])) > stored:
        raise SurrogateFormatError(f"{where}: the arrays do not match the architecture in config_json")
