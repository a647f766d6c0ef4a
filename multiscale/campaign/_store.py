"""The campaign folder: atomic files, per-task records with hashes, mid-task checkpoints.

Layout of ``DIR``::

    campaign.json           the manifest: spec, spec hash, package version, task ids
    tasks/<task>.npz        a finished task's result (a dataset as NumPy arrays + JSON; see
                            `dataset_bytes`: a tenth of netCDF's cost per small file)
    tasks/<task>.json       its record: status, SHA-256 of the result, spec hash, version, rank,
                            seconds; or the error of a failed task
    checkpoints/<task>.npz  the state of a running simulation task (self-checking digest)
    surrogates/<point>.h5   trained surrogates
    campaign.nc             the merged dataset

Every file is written to a temporary name in the same folder, fsynced, then renamed, so a kill
at any moment leaves either the old file or the new one under a final name, never a torn one.
A result counts as done only when its record exists and the result's hash matches it.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .._errors import CampaignError

MANIFEST = "campaign.json"
MERGED = "campaign.nc"
MANIFEST_FORMAT = 1


def _fault(point: str) -> None:
    """Fault injection for the crash tests: ``MULTISCALE_CAMPAIGN_FAULT=<point>:<n>`` sends
    SIGKILL to this process at the n-th time (1-based) it reaches ``point``."""
    spec = os.environ.get("MULTISCALE_CAMPAIGN_FAULT")
    if not spec or not spec.startswith(point + ":"):
        return
    _fault.count = getattr(_fault, "count", 0) + 1  # type: ignore[attr-defined]
    if _fault.count == int(spec.rsplit(":", 1)[1]):  # type: ignore[attr-defined]
        os.kill(os.getpid(), signal.SIGKILL)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(tmp)`` then fsync and rename ``tmp`` to ``path`` (same folder)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        _fault("write")  # a kill here leaves a complete temporary file and no final one
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_dir(path.parent)


def atomic_bytes(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            half = len(data) // 2
            f.write(data[:half])
            f.flush()
            _fault("midwrite")  # a kill here leaves a torn temporary file
            f.write(data[half:])
    atomic_write(path, write)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class Store:
    """The files of one campaign folder."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self.tasks = self.root / "tasks"
        self.checkpoints = self.root / "checkpoints"
        self.surrogates = self.root / "surrogates"

    def create_dirs(self) -> None:
        for d in (self.root, self.tasks, self.checkpoints, self.surrogates):
            d.mkdir(parents=True, exist_ok=True)

    # ----- manifest ---------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any] | None:
        p = self.root / MANIFEST
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CampaignError(f"{p}: unreadable manifest ({e}); move the folder aside to start over") from None

    def write_manifest(self, doc: Mapping[str, Any]) -> None:
        atomic_bytes(self.root / MANIFEST, json.dumps(doc, indent=1, default=str).encode())

    # ----- task results -----------------------------------------------------------------------
    def result_path(self, filename: str) -> Path:
        return self.tasks / f"{filename}.npz"

    def record_path(self, filename: str) -> Path:
        return self.tasks / f"{filename}.json"

    def read_record(self, filename: str) -> dict[str, Any] | None:
        p = self.record_path(filename)
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a record is written atomically: unreadable means tampered, so redo

    def check_done(self, filename: str, spec_hash: str) -> tuple[bool, str]:
        """(done, why not): a task is done when its record says so, the spec hash matches and
        the SHA-256 of its result (and of its other files) equals the recorded one."""
        return self._verified(filename, spec_hash)[:2]

    def load_result(self, filename: str, spec_hash: str, label: str = ""):
        """The verified result of a done task (read once: hashed and parsed from the same
        bytes); raises :class:`CampaignError` saying why it is not done."""
        ok, why, data = self._verified(filename, spec_hash)
        if not ok:
            raise CampaignError(f"task {label or filename} is not done ({why}); run `multiscale campaign run` to finish it")
        return dataset_from_bytes(data)

    def _verified(self, filename: str, spec_hash: str) -> tuple[bool, str, bytes]:
        rec = self.read_record(filename)
        if rec is None:
            return False, "not started", b""
        if rec.get("status") != "done":
            return False, f"recorded as {rec.get('status')}", b""
        if rec.get("spec_hash") != spec_hash:
            return False, "recorded under another spec", b""
        res = self.result_path(filename)
        if not res.exists():
            return False, "result file missing", b""
        data = res.read_bytes()
        if hashlib.sha256(data).hexdigest() != rec.get("sha256"):
            return False, "result file does not match its recorded SHA-256 (corrupted)", b""
        for rel, digest in rec.get("files", {}).items():  # surrogates, reports
            f = self.root / rel
            if not f.is_file() or sha256_file(f) != digest:
                return False, f"{rel} is missing or does not match its recorded SHA-256 (corrupted)", b""
        return True, "", data

    def write_result(self, filename: str, ds, record: Mapping[str, Any], files: Sequence[Path] = ()) -> None:
        """Result first, then its record (with the hashes of the result and of the task's other
        ``files``): a kill in between leaves a result without a record, which is recomputed."""
        res = self.result_path(filename)
        data = dataset_bytes(ds)
        atomic_bytes(res, data)
        rec = dict(record, status="done", file=res.name, sha256=hashlib.sha256(data).hexdigest(), finished=now(),
                   files={str(f.relative_to(self.root)): sha256_file(f) for f in files})
        atomic_bytes(self.record_path(filename), json.dumps(rec, indent=1).encode())

    def write_failure(self, filename: str, record: Mapping[str, Any]) -> None:
        rec = dict(record, status="failed", finished=now())
        atomic_bytes(self.record_path(filename), json.dumps(rec, indent=1).encode())

    # ----- checkpoints ------------------------------------------------------------------------
    def checkpoint_path(self, filename: str) -> Path:
        return self.checkpoints / f"{filename}.npz"

    def write_checkpoint(self, filename: str, arrays: Mapping[str, np.ndarray], meta: Mapping[str, Any]) -> None:
        meta = dict(meta, digest=_digest(arrays))
        buf = io.BytesIO()
        np.savez(buf, __meta__=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        atomic_bytes(self.checkpoint_path(filename), buf.getvalue())

    def read_checkpoint(self, filename: str, expect: Mapping[str, Any]) -> tuple[dict[str, np.ndarray], dict] | None:
        """The checkpoint's arrays and metadata, or None if absent, unreadable, from another
        spec/task, or failing its digest (then it is ignored and the task restarts)."""
        p = self.checkpoint_path(filename)
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
                meta = json.loads(bytes(z["__meta__"]).decode())
        except Exception:  # noqa: BLE001 - any unreadable checkpoint is simply not used
            return None
        if any(meta.get(k) != v for k, v in expect.items()) or meta.get("digest") != _digest(arrays):
            return None
        return arrays, meta

    def drop_checkpoint(self, filename: str) -> None:
        p = self.checkpoint_path(filename)
        if p.exists():
            p.unlink()

    def clean_temporaries(self) -> int:
        """Remove temporary files and folders left by killed writers (only the names this
        module writes); returns how many."""
        n = 0
        pats = [(self.root, f".{MANIFEST}.*.tmp"), (self.root, f".{MERGED}.*.tmp"), (self.tasks, ".*.tmp"),
                (self.checkpoints, ".*.tmp"), (self.surrogates, ".*.tmp"), (self.root / "reports", ".*.tmp")]
        for d, pat in pats:
            if d.exists():
                for p in d.glob(pat):
                    shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
                    n += 1
        return n

    def lock(self) -> None:
        """Hold an exclusive lock on ``campaign.lock`` until this process exits, so two jobs
        (say a resubmission while the old ranks still run) never share a folder."""
        import fcntl

        self._lock = open(self.root / "campaign.lock", "a")  # noqa: SIM115 - held for the run
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.unlock()
            raise CampaignError(f"{self.root} is in use by another campaign run (campaign.lock is held); "
                                "wait for it to end or stop it first") from None

    def unlock(self) -> None:
        lock = getattr(self, "_lock", None)
        if lock is not None:
            lock.close()  # closing the file releases the flock
            self._lock = None


def _digest(arrays: Mapping[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for k in sorted(arrays):
        a = np.ascontiguousarray(arrays[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_jsonable(e) for e in v]
    return v


def dataset_bytes(ds) -> bytes:
    """An xarray Dataset as an ``.npz`` (no pickle): one array per variable, dims and attrs
    as JSON. Round trips values, dtypes, dims, coordinates and JSON-able attributes."""
    arrays: dict[str, np.ndarray] = {}
    layout: dict[str, Any] = {"attrs": _jsonable(dict(ds.attrs)), "vars": [], "coords": []}
    for kind, names in (("coords", list(ds.coords)), ("vars", list(ds.data_vars))):
        for name in names:
            v = ds[name].variable
            key = f"a{len(arrays)}"
            arrays[key] = np.asarray(v.values)
            layout[kind].append({"name": name, "key": key, "dims": list(v.dims),
                                 "attrs": {k: _jsonable(a) for k, a in v.attrs.items()}})
    buf = io.BytesIO()
    np.savez(buf, __layout__=np.frombuffer(json.dumps(layout).encode(), np.uint8), **arrays)
    return buf.getvalue()


def dataset_from_bytes(data: bytes):
    import xarray as xr

    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        layout = json.loads(bytes(z["__layout__"]).decode())
        coords = {c["name"]: (tuple(c["dims"]), z[c["key"]], c["attrs"]) for c in layout["coords"]}
        data_vars = {v["name"]: (tuple(v["dims"]), z[v["key"]], v["attrs"]) for v in layout["vars"]}
    return xr.Dataset(data_vars, coords=coords, attrs=layout["attrs"])
