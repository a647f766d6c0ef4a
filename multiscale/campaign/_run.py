"""Running a campaign on one process or on MPI ranks, with dynamic load balancing, resume and
fail-fast.

Ranks take tasks from rank 0 one at a time (largest estimated cost first), so uneven tasks do
not idle ranks; rank 0 serves requests from a thread and works too. Which rank runs a task
never changes its numbers (seeds and path ranges come from the spec), so results do not depend
on the rank count. An exception in a task is recorded in the task's record, printed with the
task id, and ends the whole job (``MPI_Abort``) at once.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence


from .._device import build_info
from ._spec import CampaignSpec, Task, load_spec
from .._errors import CampaignError
from ._store import Store, now

_TAG_REQ, _TAG_TASK = 11, 12


def mpi_launched() -> bool:
    """True when this process was started by an MPI launcher (mpiexec, srun, ...)."""
    keys = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "HYDI_CONTROL_FD")
    if any(k in os.environ for k in keys):
        return True
    return int(os.environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_PROCID" in os.environ


class _Serial:
    """The communicator of a run without MPI."""

    rank, size = 0, 1

    def Abort(self, code: int = 1) -> None:  # noqa: N802 - mirrors mpi4py
        os._exit(code)


def _comm():
    if not mpi_launched():
        return _Serial(), 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_rank, local_size = node.Get_rank(), node.Get_size()
    node.Free()
    return comm, local_rank, local_size


def _wait(req) -> Any:
    """Wait for a non-blocking MPI request without busy-spinning a core."""
    delay = 1e-4
    while True:
        done, value = req.test()
        if done:
            return value
        time.sleep(delay)
        delay = min(2 * delay, 5e-3)


def _barrier(comm) -> None:
    if comm.size > 1:
        _wait(comm.Ibarrier())


def _bcast(comm, value):
    return comm.bcast(value, root=0) if comm.size > 1 else value


class _Queue:
    def __init__(self, items: Sequence[int]) -> None:
        self._items, self._pos, self._lock = list(items), 0, threading.Lock()

    def next(self) -> int | None:
        with self._lock:
            if self._pos >= len(self._items):
                return None
            self._pos += 1
            return self._items[self._pos - 1]


def _serve(comm, queue: _Queue, workers: int) -> None:
    from mpi4py import MPI

    status = MPI.Status()
    while workers:
        if comm.Iprobe(source=MPI.ANY_SOURCE, tag=_TAG_REQ, status=status):
            src = status.Get_source()
            comm.recv(source=src, tag=_TAG_REQ)
            item = queue.next()
            comm.send(item, dest=src, tag=_TAG_TASK)
            workers -= item is None
        else:
            time.sleep(1e-3)


def _distribute(comm, items: Sequence[int], execute: Callable[[int], None]) -> None:
    """Run ``execute(i)`` for every item, each exactly once, on whichever rank is free."""
    if comm.size == 1:
        for i in items:
            execute(i)
        return
    if comm.rank == 0:
        queue = _Queue(items)
        from mpi4py import MPI

        if MPI.Query_thread() < MPI.THREAD_MULTIPLE:  # e.g. Cray MPICH by default: rank 0 only serves
            _serve(comm, queue, comm.size - 1)
            return
        server = threading.Thread(target=_serve, args=(comm, queue, comm.size - 1), daemon=True)
        server.start()
        while (i := queue.next()) is not None:
            execute(i)
        server.join()
    else:
        while True:
            comm.send(comm.rank, dest=0, tag=_TAG_REQ)
            i = _wait(comm.irecv(source=0, tag=_TAG_TASK))
            if i is None:
                return
            execute(i)


class _Progress:
    """Per-rank lines: every task on a terminal, else at most one line per ``every`` seconds."""

    def __init__(self, rank: int, total: int, enabled: bool) -> None:
        self.rank, self.total, self.enabled = rank, total, enabled
        self.every = 0.0 if sys.stderr.isatty() else 30.0
        self.done, self.last = 0, time.monotonic()

    def line(self, text: str) -> None:
        if self.enabled:
            print(f"[rank {self.rank}] {text}", file=sys.stderr, flush=True)

    def task(self, task: Task, seconds: float) -> None:
        self.done += 1
        if time.monotonic() - self.last >= self.every:
            self.last = time.monotonic()
            self.line(f"{self.done} tasks done (last {task.id}, {seconds:.1f} s)")


def _diff(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k, "<absent>"), new.get(k, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out += _diff(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def _prepare(spec: CampaignSpec, store: Store, tasks: list[Task], log: Callable[[str], None]) -> list[int]:
    """On rank 0: create or check the folder; the indices of the tasks still to run."""
    root = store.root
    if root.exists() and not root.is_dir():
        raise CampaignError(f"--out {str(root)!r} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()) and store.read_manifest() is None:
        raise CampaignError(f"--out {str(root)!r} is a non-empty folder that holds no campaign "
                            "(no campaign.json); choose a new or empty folder")
    store.create_dirs()
    store.lock()
    version = build_info()["version"]
    man = store.read_manifest()
    if man is not None:
        if man.get("spec_hash") != spec.spec_hash:
            changes = _diff(man.get("spec", {}), spec.source)
            raise CampaignError(
                f"{store.root} holds a campaign with a different spec; refusing to resume. Changed: "
                f"{'; '.join(changes) or 'format'}. Use a new --out folder, or restore the spec.")
        if man.get("package_version") != version:
            raise CampaignError(
                f"{store.root} was run with multiscale {man.get('package_version')}, this is {version}; "
                "results may differ, so refusing to resume. Use a new --out folder.")
    else:
        store.write_manifest({"format": 1, "name": spec.name, "spec": spec.source, "spec_hash": spec.spec_hash,
                              "package_version": version, "created": now(),
                              "tasks": [t.id for t in tasks]})
    removed = store.clean_temporaries()
    if removed:
        log(f"removed {removed} temporary file(s) left by an interrupted run")
    todo, skipped = [], 0
    for i, t in enumerate(tasks):
        ok, why = store.check_done(t.filename, spec.spec_hash)
        if ok:
            skipped += 1
            store.drop_checkpoint(t.filename)  # left by a kill between result and clean-up
            continue
        if why not in ("not started",):
            log(f"{t.id}: {why}; recomputing")
        todo.append(i)
    if skipped:
        log(f"resuming: {skipped} of {len(tasks)} tasks already done")
    return todo


def _device_for(spec: CampaignSpec, local_rank: int) -> str:
    if spec.device in ("cuda", "auto"):
        ndev = int(build_info().get("cuda_devices") or 0)
        if ndev:
            return f"cuda:{local_rank % ndev}"
        if spec.device == "cuda":
            raise CampaignError("campaign.device = 'cuda' but no CUDA device is visible on this node")
        return "cpu"
    return spec.device


def _default_threads(local_size: int) -> int:
    """Kernel threads per rank: all CPUs of a per-rank CPU set (srun --cpus-per-task), else
    the node's CPUs shared among its ranks (mpiexec without binding)."""
    mine = len(os.sched_getaffinity(0))
    if mine < (os.cpu_count() or mine):
        return mine
    return max(1, mine // local_size)


def _fault_raise(rank: int) -> None:
    """``MULTISCALE_CAMPAIGN_FAULT=raise:<rank>`` makes that rank's first task raise (tests)."""
    spec = os.environ.get("MULTISCALE_CAMPAIGN_FAULT", "")
    if spec == f"raise:{rank}":
        raise RuntimeError(f"injected fault on rank {rank}")


def run_campaign(spec: str | Path | CampaignSpec, out: str | os.PathLike, *, progress: bool = True,
                 merge: bool = True) -> Path | None:
    """Run (or resume) a campaign into the folder ``out``; returns the merged dataset's path
    (on rank 0; None on other ranks or with ``merge=False``).

    Under an MPI launcher every rank calls this; otherwise it runs as one process.

    Raises
    ------
    CampaignError
        The folder holds another spec or package version, or a task failed (one process;
        under MPI a failure aborts the job with exit code 1 after printing the task id).
    """
    if not isinstance(spec, CampaignSpec):
        spec = load_spec(spec)
    comm, local_rank, local_size = _comm()
    store = Store(out)
    try:
        return _run_locked(spec, store, comm, local_rank, local_size, progress, merge)
    except BaseException as e:
        # An error outside a task (folder, device, merge, Ctrl-C) on any rank must end every
        # rank, never leave the others waiting for it; a task's own failure aborts in the task.
        if comm.size > 1 and not getattr(e, "collective", False) and not isinstance(e, SystemExit):
            msg = e if isinstance(e, CampaignError) else f"{type(e).__name__}: {e}"
            print(f"multiscale campaign: rank {comm.rank}: {msg}", file=sys.stderr, flush=True)
            comm.Abort(1)
        raise
    finally:
        store.unlock()


def _run_locked(spec: CampaignSpec, store: Store, comm, local_rank: int, local_size: int, progress: bool,
                merge: bool) -> Path | None:
    from ._merge import merge_campaign, point_inputs
    from ._tasks import run_average, run_simulate, run_train, run_validate

    rank = comm.rank
    out = store.root
    tasks = spec.tasks()
    prog = _Progress(rank, len(tasks), progress)

    def log(text: str) -> None:
        prog.line(text)

    # Rank 0 checks the folder; every rank learns the outcome (so a refusal ends all ranks).
    todo: list[int] | str
    if rank == 0:
        try:
            todo = _prepare(spec, store, tasks, log)
        except Exception as e:  # noqa: BLE001 - every rank must learn of it, then all stop
            todo = str(e) if isinstance(e, CampaignError) else f"{type(e).__name__}: {e}"
    else:
        todo = []
    todo = _bcast(comm, todo)
    if isinstance(todo, str):
        if rank != 0:  # every rank learnt it together: rank 0 reports, the others just stop
            sys.exit(1)
        err = CampaignError(todo)
        err.collective = True  # type: ignore[attr-defined]
        raise err

    device = _device_for(spec, local_rank)
    threads = spec.threads or _default_threads(local_size)
    version = build_info()["version"]
    if rank == 0:
        log(f"campaign {spec.name!r}: {len(tasks)} tasks, {len(todo)} to run on {comm.size} rank(s), "
            f"{threads} thread(s) per rank, device {device}")
    first = [True]

    def execute(i: int) -> None:
        task = tasks[i]
        t0 = time.perf_counter()
        record = {"task": task.id, "step": task.step, "point": task.point.values, "spec_hash": spec.spec_hash,
                  "package_version": version, "rank": rank, "ranks": comm.size, "device": device,
                  "threads": threads, "started": now()}
        try:
            if first[0]:
                first[0] = False
                _fault_raise(rank)
            # Warnings (unconverged points, lag choices, ...) go to the task's record and the
            # log: they describe results, they do not stop a campaign.
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                if task.step == "simulate":
                    ds = run_simulate(spec, task, store, device=device, threads=threads, log=log)
                elif task.step == "average":
                    ds = run_average(spec, task, device=device, threads=threads)
                elif task.step == "train":
                    ds = run_train(spec, task, store, point_inputs(spec, store, task.point, spec.train.source))
                else:
                    est = point_inputs(spec, store, task.point, "average") if spec.average is not None else None
                    ds = run_validate(spec, task, store, est, threads=threads)
            record["warnings"] = sorted({f"{w.category.__name__}: {w.message}" for w in caught})
            for w in record["warnings"]:
                log(f"{task.id}: {w}")
            record["seconds"] = round(time.perf_counter() - t0, 3)
            files = []
            if task.step == "train":
                files = [store.root / ds.attrs["surrogate_file"]]
            elif task.step == "validate":
                files = sorted((store.root / "reports" / task.point.key).iterdir())
            store.write_result(task.filename, ds, record, files)
            if task.step == "simulate":
                store.drop_checkpoint(task.filename)
        except BaseException as e:  # noqa: BLE001 - recorded, reported, then the job ends
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = f"{type(e).__name__}: {e}"
            try:
                store.write_failure(task.filename, dict(record, error=msg, traceback=traceback.format_exc()))
            except Exception:  # noqa: BLE001 - reporting the task matters more than the record
                pass
            text = f"multiscale campaign: task {task.id} failed on rank {rank}: {msg}"
            if comm.size > 1:
                print(text, file=sys.stderr, flush=True)
                traceback.print_exc()
                sys.stderr.flush()
                comm.Abort(1)
            raise CampaignError(text) from e
        prog.task(task, time.perf_counter() - t0)

    for phase in (0, 1, 2):
        items = sorted((i for i in todo if tasks[i].phase == phase), key=lambda i: (-tasks[i].cost, i))
        _distribute(comm, items, execute)
        _barrier(comm)
    if rank != 0 or not merge:
        return None
    path = merge_campaign(out, spec=spec)
    log(f"merged {len(tasks)} tasks into {path}")
    return path


def campaign_status(out: str | os.PathLike) -> dict[str, Any]:
    """Counts of done, failed, running (checkpointed) and pending tasks of a campaign folder,
    with the failed tasks' errors."""
    store = Store(out)
    man = store.read_manifest()
    if man is None:
        raise CampaignError(f"{out} is not a campaign folder (no campaign.json)")
    spec = load_spec(man["spec"])
    tasks = spec.tasks()
    merged = store.root / "campaign.nc"
    records = [p.stat().st_mtime for p in store.tasks.glob("*.json")] if store.tasks.exists() else []
    fresh = merged.exists() and merged.stat().st_mtime >= max(records, default=0.0)
    out_: dict[str, Any] = {"name": spec.name, "tasks": len(tasks), "done": 0, "failed": [], "checkpointed": [],
                            "pending": 0, "corrupt": [], "merged": fresh,
                            "package_version": man.get("package_version"), "spec_hash": man.get("spec_hash")}
    for t in tasks:
        ok, why = store.check_done(t.filename, spec.spec_hash)
        rec = store.read_record(t.filename)
        if ok:
            out_["done"] += 1
        elif rec is not None and rec.get("status") == "failed":
            out_["failed"].append({"task": t.id, "rank": rec.get("rank"), "error": rec.get("error")})
        elif "corrupt" in why:
            out_["corrupt"].append(t.id)
        elif store.checkpoint_path(t.filename).exists():
            out_["checkpointed"].append(t.id)
        else:
            out_["pending"] += 1
    return out_


def format_status(st: dict[str, Any]) -> str:
    lines = [f"campaign {st['name']!r}: {st['done']}/{st['tasks']} tasks done, {len(st['failed'])} failed, "
             f"{len(st['checkpointed'])} checkpointed mid-run, {st['pending']} pending"
             + (f", {len(st['corrupt'])} corrupt (recomputed on resume)" if st["corrupt"] else "")
             + ("; merged" if st["merged"] else "; not merged (or merged before the last task finished)")]
    for f in st["failed"]:
        lines.append(f"  failed {f['task']} (rank {f['rank']}): {f['error']}")
    return "\n".join(lines)


def format_plan(spec: CampaignSpec, verbose: bool = False) -> str:
    """The task list and cost estimate of ``campaign plan``."""
    tasks = spec.tasks()
    grid = spec.grid()
    by_step: dict[str, list[Task]] = {}
    for t in tasks:
        by_step.setdefault(t.step, []).append(t)
    total = sum(t.cost for t in tasks)
    lines = [f"campaign {spec.name!r}: model {spec.model_name}, {len(grid)} grid point(s) "
             f"({' x '.join(f'{k}[{len(v)}]' for k, v in spec.axes.items()) or 'no axes'}), "
             f"steps {', '.join(spec.steps)}",
             f"spec hash {spec.spec_hash[:16]}",
             f"{'step':<10}{'tasks':>7}{'core-s (est.)':>16}{'largest task':>15}"]
    for step, ts in by_step.items():
        lines.append(f"{step:<10}{len(ts):>7}{sum(t.cost for t in ts):>16.3g}{max(t.cost for t in ts):>15.3g}")
    lines.append(f"{'total':<10}{len(tasks):>7}{total:>16.3g}")
    lines.append(f"estimated output {spec.storage_bytes() / 2**20:.1f} MiB merged (plus the same again "
                 f"as task files); {len(tasks) * 2 + 1} files")
    lines.append("cost estimated from nominal rates of one core (benchmarks/); ranks share tasks "
                 "dynamically, so wall time ~ total / ranks when tasks outnumber ranks")
    shown = tasks if verbose else tasks[:12]
    lines.append("tasks:")
    for t in shown:
        lines.append(f"  {t.id:<40} {json.dumps(t.point.values, sort_keys=True):<40} ~{t.cost:.3g} core-s")
    if len(shown) < len(tasks):
        lines.append(f"  ... {len(tasks) - len(shown)} more (--verbose lists all)")
    return "\n".join(lines)
