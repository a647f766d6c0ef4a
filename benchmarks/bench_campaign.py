"""Campaign costs, each against a baseline measured in the same run:

* ``overhead per task``: a campaign of many small simulation tasks (one process) against the
  same ``simulate`` calls made directly in a loop; the difference per task is what the
  campaign adds (result file, record, hashes, fsyncs, merge share);
* ``checkpoint overhead``: one long simulation task of a campaign, checkpointing every
  ``--checkpoint`` s, against the same paths in one direct ``simulate`` call;
* ``weak scaling``: ``mpiexec -n 1`` with W tasks against ``mpiexec -n 2`` with 2W tasks of the
  same size, one kernel thread per rank; efficiency = t(1 rank) / t(2 ranks) (ideal 1).

    python benchmarks/bench_campaign.py [--json out.json]
"""
from __future__ import annotations

import argparse
import glob
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if glob.glob(os.path.join(_ROOT, "multiscale", "_core*")):
    sys.path.insert(0, _ROOT)

import multiscale as ms  # noqa: E402
from multiscale.campaign import load_spec, run_campaign, simulate_direct_kwargs  # noqa: E402


def _spec(n_tasks: int, paths: int, t_end: float, threads: int | None = None, ck: float = 60.0) -> dict:
    doc = {"campaign": {"name": "bench", "seed": 1, "model": "tilted_double_well"},
           "grid": {"seed": list(range(n_tasks))},
           "simulate": {"t_end": t_end, "dt": 1e-3, "n_paths": paths, "paths_per_task": paths,
                        "save_every": t_end / 4, "checkpoint_seconds": ck}}
    if threads is not None:
        doc["campaign"]["threads"] = threads
    return doc


def _toml(doc: dict) -> str:
    lines = []
    for t, body in doc.items():
        lines.append(f"[{t}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def _timed_campaign(doc: dict, folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    t0 = time.perf_counter()
    run_campaign(load_spec(doc), folder, progress=False)
    return time.perf_counter() - t0


def _mpi(doc: dict, ranks: int, folder: Path) -> float:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    spec = folder / "spec.toml"
    spec.write_text(_toml(doc))
    env = dict(os.environ, PYTHONPATH=str(Path(ms.__file__).resolve().parents[1]))
    t0 = time.perf_counter()
    subprocess.run([shutil.which("mpiexec"), "-n", str(ranks), sys.executable, "-m", "mpi4py", "-m", "multiscale",
                    "campaign", "run", str(spec), "--out", str(folder / "run"), "--quiet"],
                   check=True, env=env, cwd=tempfile.gettempdir())
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", type=int, default=48, help="tasks of the overhead measurement")
    ap.add_argument("--weak-tasks", type=int, default=4, help="tasks per rank, weak scaling")
    ap.add_argument("--checkpoint", type=float, default=1.0, help="checkpoint interval (s)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-campaign-"))
    res: dict = {"cores": len(os.sched_getaffinity(0))}

    # 1. overhead per task against direct simulate calls
    doc = _spec(a.tasks, 512, 0.5)
    spec = load_spec(doc)

    def direct() -> float:
        t0 = time.perf_counter()
        for t in spec.tasks():
            ms.simulate(spec.model, **simulate_direct_kwargs(spec, t), n_paths=t.stop - t.start)
        return time.perf_counter() - t0

    t_dir = min(direct() for _ in range(a.repeats))
    t_camp = min(_timed_campaign(doc, tmp / "ovh") for _ in range(a.repeats))
    res["overhead_ms_per_task"] = 1e3 * (t_camp - t_dir) / a.tasks
    res["direct_ms_per_task"] = 1e3 * t_dir / a.tasks
    print(f"overhead: {a.tasks} tasks of 512 paths x 500 steps: campaign {t_camp:.2f} s, direct calls "
          f"{t_dir:.2f} s -> {res['overhead_ms_per_task']:.1f} ms per task "
          f"(a direct task takes {res['direct_ms_per_task']:.1f} ms)")

    # 2. checkpointing a long task
    long_ = _spec(1, 20000, 20.0, ck=a.checkpoint)
    lspec = load_spec(long_)
    task = lspec.tasks()[0]

    def one_call() -> float:
        t0 = time.perf_counter()
        ms.simulate(lspec.model, **simulate_direct_kwargs(lspec, task), n_paths=task.stop - task.start)
        return time.perf_counter() - t0

    t_on = min(_timed_campaign(long_, tmp / "ck") for _ in range(a.repeats))
    t_off = min(one_call() for _ in range(a.repeats))
    res["checkpoint_ratio"] = t_on / t_off
    print(f"one task checkpointing every {a.checkpoint:g} s: {t_on:.2f} s against {t_off:.2f} s for one "
          f"direct simulate call ({res['checkpoint_ratio']:.3f}x)")

    # 3. weak scaling 1 -> 2 ranks, one thread per rank
    if shutil.which("mpiexec") is None:
        print("weak scaling: skipped (no mpiexec; pip install mpich)")
    else:
        w = a.weak_tasks
        one = _spec(w, 20000, 12.0, threads=1)
        two = _spec(2 * w, 20000, 12.0, threads=1)
        t1, t2 = math.inf, math.inf
        for _ in range(a.repeats):  # alternate so drifts in machine load hit both
            t1 = min(t1, _mpi(one, 1, tmp / "w1"))
            t2 = min(t2, _mpi(two, 2, tmp / "w2"))
        res["weak_1rank_s"], res["weak_2rank_s"], res["weak_efficiency"] = t1, t2, t1 / t2
        print(f"weak scaling: 1 rank x {w} tasks {t1:.2f} s, 2 ranks x {w} tasks each {t2:.2f} s -> "
              f"efficiency {t1 / t2:.1%}")
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
