"""The portable surrogate format (``.mss``) read by the C/C++/Fortran evaluators.

Specification: ``docs/surrogate_format.md``. A text header of ``key value`` lines (ASCII),
then one binary payload: every array as little-endian float64 in C order, in the order the
header lists them, followed by a UTF-8 JSON metadata block. CRC-32 checksums cover the header
and the payload, so truncation and corruption are detected by every reader.

Version 1 holds an :class:`EffectiveSDE`. Version 2 adds a ``kind sde|ring`` line and the ring
form, a :class:`LocalEffectiveSDE` whose resolved drift is stored as a stack program
(:mod:`._program`) beside its model-language text.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .._errors import ExportFormatError

FORMAT_MAGIC = "MSSURROGATE"
#: Newest version written and read. Version 2 adds the ``kind`` line and the ring form
#: (:class:`LocalEffectiveSDE`); an :class:`EffectiveSDE` is still written as version 1, which
#: every reader (old ones included) reads.
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
MAX_HEADER_BYTES = 1 << 16
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_RING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*(\[[0-9]+\])?$")  # ring sites: X[0] .. X[K-1]


def _arrays(model) -> list[tuple[str, np.ndarray]]:
    from ..surrogate._kernel import portable_arrays  # the one definition of the array order

    return portable_arrays(model)


def _is_ring(model) -> bool:
    from ..surrogate._local import LocalEffectiveSDE

    return isinstance(model, LocalEffectiveSDE)


def ring_arrays(model) -> list[tuple[str, np.ndarray]]:
    """Every array of a :class:`LocalEffectiveSDE` in the portable format's order (version 2,
    ``kind ring``): the shared networks, the five scalings as ``(1,)`` arrays, and the resolved
    drift's program (:mod:`._program`) when the model has one."""
    state = model.state_arrays()
    names = [f"{net}.{part}.{i}" for net in ("drift_net", "diff_net") for i in range(len(model.hidden) + 1)
             for part in ("weights", "biases")]
    scalars = ["x_mean", "x_scale", "u_mean", "u_scale", "s_scale"]
    missing = sorted(set(names + scalars) ^ set(state))
    if missing:
        raise ValueError(f"model state and export layout disagree on {missing}")
    out = [(k, np.ascontiguousarray(state[k], dtype="<f8")) for k in names]
    out += [(k, np.ascontiguousarray(np.reshape(state[k], (1,)), dtype="<f8")) for k in scalars]
    if model.resolved is not None:
        from ._program import compile_resolved

        out += compile_resolved(model.resolved, model.resolved_params).arrays()
    return out


def export_surrogate(model, path: str | os.PathLike) -> Path:
    """Write an :class:`EffectiveSDE` or a :class:`LocalEffectiveSDE` in the portable format
    (atomically).

    An :class:`EffectiveSDE` is written as format version 1; a :class:`LocalEffectiveSDE` (ring)
    as version 2 with ``kind ring``: its shared networks, scalings, stencil, and its resolved drift
    ``R`` both as a stack program (evaluated by the C/C++/Fortran readers) and as the model's
    definition (TOML text, in the metadata's ``resolved_toml``). See docs/surrogate_format.md.

    Parameters
    ----------
    model : EffectiveSDE or LocalEffectiveSDE
    path : str or path-like
        Output file (conventionally ``.mss``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist")
    ring = _is_ring(model)
    bad = [n for n in model.names if not (_RING_NAME if ring else _NAME).match(n)]
    if bad:
        raise ValueError(f"slow variable names {bad} cannot be exported: use letters, digits, '_' and '.'"
                         + (" (and a [index] suffix)" if ring else ""))
    if ring:
        arrays = ring_arrays(model)
        meta_d = {"config": model.config(), "units": dict(getattr(model, "units", {}) or {}),
                  "provenance": model.provenance,
                  "resolved_toml": None if model.resolved is None else model.resolved.to_toml(),
                  "resolved_params": model.resolved_params}
        lines = [f"{FORMAT_MAGIC} 2", "kind ring", f"dim {model.sites}", f"members {model.members}",
                 "hidden " + " ".join(str(h) for h in model.hidden), "activation tanh", "diffusion diagonal",
                 "gradient 0", "names " + " ".join(model.names), f"stencil {model.stencil}",
                 f"resolved {int(model.resolved is not None)}"]
    else:
        arrays = _arrays(model)
        meta_d = {"config": model.config(), "units": model.units, "provenance": model.provenance}
        lines = [f"{FORMAT_MAGIC} 1", f"dim {model.dim}", f"members {model.members}",
                 "hidden " + " ".join(str(h) for h in model.hidden), "activation tanh",
                 f"diffusion {model.diffusion_form.value}", f"gradient {int(model.gradient)}",
                 "names " + " ".join(model.names)]
    meta = json.dumps(meta_d, sort_keys=True).encode("utf-8")
    payload = b"".join(a.tobytes(order="C") for _, a in arrays) + meta
    lines.append(f"arrays {len(arrays)}")
    lines += [f"array {k} {a.ndim} " + " ".join(str(d) for d in a.shape) for k, a in arrays]
    lines += [f"metadata_bytes {len(meta)}", f"payload_bytes {len(payload)}",
              f"payload_crc32 {zlib.crc32(payload):08x}"]
    head = ("\n".join(lines) + "\n").encode("ascii")
    head += f"header_crc32 {zlib.crc32(head):08x}\nend_header\n".encode("ascii")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(head)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_export(path: str | os.PathLike) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
    """Parse and verify a portable file: ``(header, arrays, metadata)``; raises ExportFormatError.

    ``header`` maps each header key to its text (``array``: ``(name, shape)`` pairs), plus
    ``version`` (int) and ``kind`` (``"sde"`` for version 1 files)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"surrogate file {str(path)!r} does not exist")
    data = path.read_bytes()
    where = str(path)
    end = data.find(b"\nend_header\n", 0, MAX_HEADER_BYTES)
    if not data.startswith(FORMAT_MAGIC.encode() + b" ") or end < 0:
        raise ExportFormatError(f"{where}: not a multiscale portable surrogate file (no {FORMAT_MAGIC} header)")
    try:
        text = data[:end + 1].decode("ascii")
    except UnicodeDecodeError:
        raise ExportFormatError(f"{where}: the header is not ASCII") from None
    body = text.rsplit("header_crc32 ", 1)
    if len(body) != 2:
        raise ExportFormatError(f"{where}: the header has no header_crc32 line")
    lines = text.splitlines()
    version = lines[0].split()[1] if len(lines[0].split()) == 2 else ""
    if version not in [str(v) for v in READ_VERSIONS]:
        raise ExportFormatError(f"{where}: format version {version!r}; this reader supports "
                                + " and ".join(str(v) for v in READ_VERSIONS))
    if f"{zlib.crc32(body[0].encode('ascii')):08x}" != body[1].strip():
        raise ExportFormatError(f"{where}: header checksum mismatch (the header was modified or corrupted)")
    head: dict[str, Any] = {"array": [], "version": int(version)}
    for line in lines[1:-1]:
        key, _, value = line.partition(" ")
        if key == "array":
            parts = value.split()
            try:
                nd = int(parts[1])
                shape = tuple(int(d) for d in parts[2:])
            except (IndexError, ValueError):
                raise ExportFormatError(f"{where}: malformed array line {line!r}") from None
            if len(shape) != nd or any(d < 0 for d in shape):
                raise ExportFormatError(f"{where}: malformed array line {line!r}")
            head["array"].append((parts[0], shape))
        else:
            head[key] = value
    try:
        n_payload, n_meta = int(head["payload_bytes"]), int(head["metadata_bytes"])
        crc = head["payload_crc32"]
    except (KeyError, ValueError):
        raise ExportFormatError(f"{where}: the header lacks payload_bytes/metadata_bytes/payload_crc32") from None
    payload = data[end + len(b"\nend_header\n"):]
    if len(payload) != n_payload:
        raise ExportFormatError(f"{where}: payload has {len(payload)} bytes, the header says {n_payload} "
                                "(truncated or padded file)")
    if f"{zlib.crc32(payload):08x}" != crc:
        raise ExportFormatError(f"{where}: payload checksum mismatch (the file was modified or corrupted)")
    arrays, off = {}, 0
    for name, shape in head["array"]:
        n = int(np.prod(shape, dtype=np.int64))
        if off + 8 * n > n_payload - n_meta:
            raise ExportFormatError(f"{where}: array {name} runs past the array block")
        arrays[name] = np.frombuffer(payload, dtype="<f8", count=n, offset=off).reshape(shape).astype(np.float64)
        off += 8 * n
    if off != n_payload - n_meta:
        raise ExportFormatError(f"{where}: the arrays fill {off} bytes, the header implies {n_payload - n_meta}")
    try:
        meta = json.loads(payload[off:].decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise ExportFormatError(f"{where}: the metadata block is not JSON") from None
    kind = head.get("kind")
    if head["version"] == 1 and kind is not None:
        raise ExportFormatError(f"{where}: format version 1 has no 'kind' line")
    if head["version"] >= 2 and kind not in ("sde", "ring"):
        raise ExportFormatError(f"{where}: format version {head['version']} needs a 'kind sde|ring' line, "
                                f"got {kind!r}")
    head.setdefault("kind", "sde")
    return head, arrays, meta


def load_export(path: str | os.PathLike):
    """Rebuild an :class:`EffectiveSDE` or :class:`LocalEffectiveSDE` from a portable file
    (checks as :func:`read_export`)."""
    from ..surrogate._model import EffectiveSDE

    head, arrays, meta = read_export(path)
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise ExportFormatError(f"{path}: the metadata holds no model description")
    try:
        if head["kind"] == "ring":
            from ..surrogate._local import LocalEffectiveSDE

            state = {k: (v.reshape(()) if v.shape == (1,) and "." not in k else v)
                     for k, v in arrays.items() if not k.startswith("resolved.")}
            model = LocalEffectiveSDE.from_config(config, state)
        else:
            model = EffectiveSDE.from_config(config, arrays)
    except (ValueError, KeyError, TypeError) as err:
        raise ExportFormatError(f"{path}: {err}") from None
    return model
