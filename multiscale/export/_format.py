"""The portable surrogate format (``.mss``) read by the C/C++/Fortran evaluators.

Specification: ``docs/surrogate_format.md``. A text header of ``key value`` lines (ASCII),
then one binary payload: every array as little-endian float64 in C order, in the order the
header lists them, followed by a UTF-8 JSON metadata block. CRC-32 checksums cover the header
and the payload, so truncation and corruption are detected by every reader.
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
FORMAT_VERSION = 1
MAX_HEADER_BYTES = 1 << 16
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")


def _arrays(model) -> list[tuple[str, np.ndarray]]:
    from ..surrogate._kernel import portable_arrays  # the one definition of the array order

    return portable_arrays(model)


def export_surrogate(model, path: str | os.PathLike) -> Path:
    """Write an :class:`EffectiveSDE` in the portable format (atomically).

    Parameters
    ----------
    model : EffectiveSDE
    path : str or path-like
        Output file (conventionally ``.mss``).

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist")
    bad = [n for n in model.names if not _NAME.match(n)]
    if bad:
        raise ValueError(f"slow variable names {bad} cannot be exported: use letters, digits, '_' and '.'")
    arrays = _arrays(model)
    meta = json.dumps({"config": model.config(), "units": model.units, "provenance": model.provenance},
                      sort_keys=True).encode("utf-8")
    payload = b"".join(a.tobytes(order="C") for _, a in arrays) + meta
    lines = [f"{FORMAT_MAGIC} {FORMAT_VERSION}", f"dim {model.dim}", f"members {model.members}",
             "hidden " + " ".join(str(h) for h in model.hidden), "activation tanh",
             f"diffusion {model.diffusion_form.value}", f"gradient {int(model.gradient)}",
             "names " + " ".join(model.names), f"arrays {len(arrays)}"]
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
    """Parse and verify a portable file: ``(header, arrays, metadata)``; raises ExportFormatError."""
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
    if version != str(FORMAT_VERSION):
        raise ExportFormatError(f"{where}: format version {version!r}; this reader supports {FORMAT_VERSION}")
    if f"{zlib.crc32(body[0].encode('ascii')):08x}" != body[1].strip():
        raise ExportFormatError(f"{where}: header checksum mismatch (the header was modified or corrupted)")
    head: dict[str, Any] = {"array": []}
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
    return head, arrays, meta


def load_export(path: str | os.PathLike):
    """Rebuild an :class:`EffectiveSDE` from a portable file (checks as :func:`read_export`)."""
    from ..surrogate._model import EffectiveSDE

    head, arrays, meta = read_export(path)
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise ExportFormatError(f"{path}: the metadata holds no model description")
    try:
        model = EffectiveSDE.from_config(config, arrays)
    except ValueError as err:
        raise ExportFormatError(f"{path}: {err}") from None
    return model
