"""Bitwise reproducibility: same seed -> same numbers, whatever the thread count, the chunking
of the ensemble (path_offset) or the number of repetitions."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

import multiscale as ms

LANES64 = ms.build_info()["lanes_float64"]
LANES32 = ms.build_info()["lanes_float32"]

BASE = dict(eps=0.01, dt=1e-3, t_end=0.5, seed=7, save_every=50)
N = 203  # not a multiple of 16 or 32: the last SIMD block is padded


def _run(model="fast_ou_linear", **kw):
    args = dict(BASE) if model == "fast_ou_linear" else {}
    args.update(kw)
    return ms.simulate(model, **args)


def _assert_same(a: xr.Dataset, b: xr.Dataset, names=("trajectory", "final_state", "status", "fail_step")):
    for name in names:
        if name not in a and name not in b:
            continue
        va, vb = a[name].values, b[name].values
        assert va.dtype == vb.dtype, name
        assert va.shape == vb.shape, name
        assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), name


def _concat(parts):
    return (np.concatenate([p["trajectory"].values for p in parts]),
            np.concatenate([p["final_state"].values for p in parts]))


def test_lanes_are_what_the_chunk_sizes_assume():
    assert N % LANES64 and N % LANES32
    assert LANES64 in (1, 2, 4, 8, 16) and LANES32 >= LANES64


# ---------------------------------------------------------------------------------------------
# threads


def test_threads_do_not_change_results():
    a = _run(n_paths=N, threads=1)
    b = _run(n_paths=N, threads=2)
    c = _run(n_paths=N, threads=3)  # more threads than cores
    assert a["trajectory"].shape == (N, 11, 2)
    assert np.all(a["status"].values == 0)
    _assert_same(a, b)
    _assert_same(a, c)
    # the run is not trivial: paths differ from each other and move
    assert np.unique(a["final_state"].values[:, 0]).size == N


def test_repeated_runs_identical_and_seeds_differ():
    a = _run(n_paths=N, threads=2)
    b = _run(n_paths=N, threads=2)
    _assert_same(a, b)
    c = _run(n_paths=N, threads=2, seed=8)
    assert not np.any(c["final_state"].values == a["final_state"].values)
    big = _run(n_paths=N, threads=2, seed=7 + 2**32)  # high word of the key
    assert not np.any(big["final_state"].values == a["final_state"].values)


def test_save_schedule_does_not_change_numbers():
    coarse = _run(n_paths=N, threads=2)
    fine = _run(n_paths=N, threads=1, save_every=1)
    assert np.array_equal(fine["trajectory"].values[:, ::50], coarse["trajectory"].values)
    assert np.array_equal(fine["final_state"].values, coarse["final_state"].values)
    none = ms.simulate("fast_ou_linear", **{**BASE, "save_every": None}, save_times=[], n_paths=N)
    assert "trajectory" not in none
    assert np.array_equal(none["final_state"].values, coarse["final_state"].values)


# ---------------------------------------------------------------------------------------------
# chunking with path_offset


@pytest.mark.parametrize("split", [[16, 187], [1, 202], [100, 103], [37, 50, 116], [200, 3]])
def test_chunked_ensemble_equals_single_run(split):
    assert sum(split) == N
    whole = _run(n_paths=N, threads=2)
    parts, off = [], 0
    for i, k in enumerate(split):
        parts.append(_run(n_paths=k, path_offset=off, threads=1 + i % 2))
        assert np.array_equal(parts[-1]["realization"].values, np.arange(off, off + k))
        off += k
    traj, final = _concat(parts)
    assert np.array_equal(traj, whole["trajectory"].values)
    assert np.array_equal(final, whole["final_state"].values)


@pytest.mark.parametrize("k", [0, 5, 15, 16, 17, 202])
def test_single_path_alone_equals_row_of_big_run(k):
    whole = _run(n_paths=N, threads=2)
    one = _run(n_paths=1, path_offset=k, threads=1)
    assert np.array_equal(one["trajectory"].values[0], whole["trajectory"].values[k])
    assert np.array_equal(one["final_state"].values[0], whole["final_state"].values[k])


def test_path_offset_changes_the_noise():
    a = _run(n_paths=20, path_offset=0)
    b = _run(n_paths=20, path_offset=20)
    assert not np.any(a["final_state"].values == b["final_state"].values)


def test_per_path_initial_state_follows_the_chunk():
    rng = np.random.default_rng(3)
    x0 = rng.normal(size=(N, 1))
    y0 = rng.normal(size=(N, 1))
    whole = _run(n_paths=N, x0=x0, y0=y0, threads=2)
    a = _run(n_paths=77, x0=x0[:77], y0=y0[:77], threads=1)
    b = _run(n_paths=N - 77, path_offset=77, x0=x0[77:], y0=y0[77:], threads=2)
    traj, final = _concat([a, b])
    assert np.array_equal(traj, whole["trajectory"].values)
    assert np.array_equal(final, whole["final_state"].values)
    assert np.array_equal(whole["trajectory"].values[:, 0, 0], x0[:, 0])


# ---------------------------------------------------------------------------------------------
# float32


def test_float32_threads_and_chunks():
    f32 = dict(n_paths=N, precision=ms.Precision.FLOAT32)
    a = _run(**f32, threads=1)
    b = _run(**f32, threads=2)
    assert a["trajectory"].dtype == np.float32 and a["final_state"].dtype == np.float32
    _assert_same(a, b)
    parts = [_run(n_paths=33, precision=ms.Precision.FLOAT32, threads=2),
             _run(n_paths=N - 33, path_offset=33, precision=ms.Precision.FLOAT32, threads=1)]
    traj, final = _concat(parts)
    assert np.array_equal(traj, a["trajectory"].values)
    assert np.array_equal(final, a["final_state"].values)
    one = _run(n_paths=1, path_offset=40, precision=ms.Precision.FLOAT32)
    assert np.array_equal(one["final_state"].values[0], a["final_state"].values[40])
    # float32 draws its own normals (four per Philox call): a different, still seeded, ensemble
    d = _run(n_paths=N, threads=2)
    assert not np.array_equal(d["final_state"].values, a["final_state"].values.astype(np.float64))


# ---------------------------------------------------------------------------------------------
# other models

MODELS = {
    "fast_ou_noise": dict(eps=0.05, dt=1e-4, t_end=0.05, save_every=100),
    "tilted_double_well": dict(eps=0.03, dt=1e-3, t_end=0.2, save_every=50),
    "periodic_potential_quartic": dict(eps=0.2, dt=1e-3, t_end=0.2, save_every=50),
    "double_well": dict(dt=1e-2, t_end=1.0, save_every=25),
    "lorenz96": dict(params={"K": 4, "J": 3, "sigma_x": 0.5, "sigma_y": 0.5}, dt=1e-3,
                     t_end=0.05, save_every=10),
}


@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32], ids=["f64", "f32"])
@pytest.mark.parametrize("model", sorted(MODELS))
def test_models_threads_and_chunks(model, precision):
    kw = dict(MODELS[model], seed=123, precision=precision)
    n = 53
    a = ms.simulate(model, n_paths=n, threads=1, **kw)
    assert np.all(a["status"].values == 0)
    b = ms.simulate(model, n_paths=n, threads=2, **kw)
    _assert_same(a, b)
    parts = [ms.simulate(model, n_paths=19, threads=2, **kw),
             ms.simulate(model, n_paths=n - 19, path_offset=19, threads=1, **kw)]
    traj, final = _concat(parts)
    assert np.array_equal(traj, a["trajectory"].values)
    assert np.array_equal(final, a["final_state"].values)
    # paths are random (noise reaches every model), so chunks could not agree by accident
    assert np.unique(a["final_state"].values[:, 0]).size == n


# ---------------------------------------------------------------------------------------------
# streaming observables

OBS = ms.Observables(("x", "y"), window=0.1, histogram=ms.Histogram(20, -3, 3))
OBS_NAMES = ("obs_mean", "obs_var", "obs_count", "hist_count", "hist_underflow", "hist_overflow")


@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32], ids=["f64", "f32"])
def test_observables_independent_of_threads(precision):
    a = _run(n_paths=N, threads=1, observables=OBS, precision=precision)
    b = _run(n_paths=N, threads=2, observables=OBS, precision=precision)
    c = _run(n_paths=N, threads=1, observables=OBS, precision=precision, save_every=1)
    for name in OBS_NAMES:
        assert np.array_equal(a[name].values, b[name].values), name
        assert np.array_equal(a[name].values, c[name].values), name
    _assert_same(a, b)
    # (c: one chunk per step, so window sums round-trip through memory at every step)
    # observables do not perturb the paths
    plain = _run(n_paths=N, threads=2, precision=precision)
    _assert_same(a, plain)


def test_observables_match_numpy():
    ds = _run(n_paths=N, threads=1, observables=OBS, save_every=1)
    traj = ds["trajectory"].values  # (paths, time, state)
    t = ds["time"].values
    starts, ends = ds["window_start"].values, ds["window_end"].values
    assert starts.size == 5
    edges = np.linspace(-3, 3, 21)
    for w in range(starts.size):
        sel = (t > starts[w] + 1e-9) & (t <= ends[w] + 1e-9)
        assert sel.sum() == 100
        for q, name in enumerate(("x", "y")):
            vals = traj[:, sel, ds["state"].values.tolist().index(name)].ravel()
            assert ds["obs_count"].values[w, q] == vals.size
            np.testing.assert_allclose(ds["obs_mean"].values[w, q], vals.mean(), rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(ds["obs_var"].values[w, q], vals.var(ddof=1), rtol=1e-12)
            h = ds["hist_count"].values[w, q]
            under, over = ds["hist_underflow"].values[w, q], ds["hist_overflow"].values[w, q]
            assert h.sum() + under + over == ds["obs_count"].values[w, q]
            assert under == np.count_nonzero(vals < -3)
            assert over == np.count_nonzero(vals >= 3)
            assert np.array_equal(h, np.histogram(vals[(vals >= -3) & (vals < 3)], edges)[0])
    assert np.any(ds["hist_underflow"].values > 0) and np.any(ds["hist_overflow"].values > 0)


def test_observables_start_and_shift():
    obs = ms.Observables(("x",), window=None, start=0.2)
    shifted = ms.Observables(("x",), window=None, start=0.2, shift=5.0)
    ds = _run(n_paths=N, threads=1, save_every=1, observables=obs)
    sh = _run(n_paths=N, threads=1, save_every=1, observables=shifted)
    t = ds["time"].values
    vals = ds["trajectory"].values[:, t > 0.2 + 1e-9, 0].ravel()
    assert ds["obs_count"].values.shape == (1, 1)
    assert ds["obs_count"].values[0, 0] == vals.size == N * 300
    np.testing.assert_allclose(ds["obs_mean"].values[0, 0], vals.mean(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(ds["obs_var"].values[0, 0], vals.var(ddof=1), rtol=1e-12)
    np.testing.assert_allclose(sh["obs_mean"].values[0, 0], vals.mean(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(sh["obs_var"].values[0, 0], vals.var(ddof=1), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# resimulate


@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32], ids=["f64", "f32"])
def test_resimulate_reproduces_bitwise(precision):
    ds = _run(n_paths=45, path_offset=9, threads=2, observables=OBS, precision=precision,
              params={"c": 0.3}, x0=0.25)
    again = ms.resimulate(ds)
    _assert_same(ds, again)
    for name in OBS_NAMES:
        assert np.array_equal(ds[name].values, again[name].values), name
    assert np.array_equal(ds["realization"].values, again["realization"].values)
    other = ms.resimulate(ds, seed=8)
    assert not np.array_equal(other["final_state"].values, ds["final_state"].values)


def test_resimulate_without_saved_initial_state():
    ds = ms.simulate("double_well", dt=1e-2, t_end=1.0, n_paths=21, seed=4, save_times=[0.5, 1.0])
    again = ms.resimulate(ds)
    _assert_same(ds, again)


def test_concurrent_calls_from_python_threads():
    from concurrent.futures import ThreadPoolExecutor

    jobs = [dict(n_paths=N, seed=s, threads=1 + s % 2, observables=OBS) for s in range(4)]
    serial = [_run(**kw) for kw in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        parallel = list(pool.map(lambda kw: _run(**kw), jobs))
    for a, b in zip(serial, parallel):
        _assert_same(a, b)
        for name in OBS_NAMES:
            assert np.array_equal(a[name].values, b[name].values), name


# ---------------------------------------------------------------------------------------------
# continuing a run with step_offset

CONTINUE = {
    "fast_ou_linear": dict(BASE),
    "tilted_double_well": MODELS["tilted_double_well"],
    "lorenz96": MODELS["lorenz96"],  # runtime size: one path per SIMD block
}


def _continue(model, kw, split, n_paths, precision, **extra):
    """The run of ``kw`` in one call and in two calls split at step ``split``."""
    kw = dict(kw, seed=11, precision=precision, **extra)
    dt = kw["dt"]
    n_steps = round(kw.pop("t_end") / dt)
    info = ms.get_model(model)
    m, _ = info.dims(info.resolve_params(kw.get("params")))
    whole = ms.simulate(model, t_end=n_steps * dt, n_paths=n_paths, threads=1, **kw)
    first = ms.simulate(model, t_end=split * dt, n_paths=n_paths, threads=2, **kw)
    final = first["final_state"].values
    second = ms.simulate(model, t_end=(n_steps - split) * dt, n_paths=n_paths, threads=2,
                         x0=final[:, :m], y0=final[:, m:], step_offset=split, **kw)
    return whole, first, second


@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32], ids=["f64", "f32"])
@pytest.mark.parametrize("model", sorted(CONTINUE))
def test_continued_run_equals_single_run(model, precision):
    kw = CONTINUE[model]
    k = kw["save_every"]
    whole, first, second = _continue(model, kw, 2 * k, 37, precision)
    assert np.all(whole["status"].values == 0)
    assert np.array_equal(second["final_state"].values, whole["final_state"].values)
    # the second call saves its initial state, which is the first call's last save
    traj = np.concatenate([first["trajectory"].values, second["trajectory"].values[:, 1:]], axis=1)
    assert traj.dtype == whole["trajectory"].dtype
    assert np.array_equal(traj, whole["trajectory"].values)
    t = np.concatenate([first["time"].values, second["time"].values[1:]])
    assert np.array_equal(t, whole["time"].values)
    assert second.attrs["step_offset"] == 2 * k and second.attrs["t_start"] == 2 * k * kw["dt"]
    _assert_same(second, ms.resimulate(second))  # continued runs re-simulate from their attrs


def test_continued_run_observables_and_fail_step_are_global():
    obs = ms.Observables(("x", "y"), window=0.1, histogram=ms.Histogram(20, -3, 3))
    whole, _, second = _continue("fast_ou_linear", BASE, 200, N, ms.Precision.FLOAT64, observables=obs)
    assert np.allclose(second["window_start"].values, [0.2, 0.3, 0.4])
    for name in ("window_start", "window_end", *OBS_NAMES):
        assert np.array_equal(second[name].values, whole[name].values[2:]), name
    # paths that blow up after the split report the global failure step
    kw = dict(params={"sigma": 0.4}, dt=0.1, n_paths=40, seed=3, x0=np.linspace(-10.0, 10.0, 40),
              throw=False)
    whole = ms.simulate("double_well", t_end=2.0, **kw)
    first = ms.simulate("double_well", t_end=0.5, **kw)
    live = first["status"].values == 0
    second = ms.simulate("double_well", t_end=1.5, step_offset=5,
                         **dict(kw, x0=first["final_state"].values[live], n_paths=int(live.sum())))
    late = second["status"].values == 1
    assert np.any(late) and np.all(second["fail_step"].values[late] >= 5)
    assert np.array_equal(second["fail_step"].values, whole["fail_step"].values[live])
    assert np.array_equal(second["status"].values, whole["status"].values[live])


def test_step_offset_changes_the_noise():
    a = _run(n_paths=20)
    b = _run(n_paths=20, step_offset=1)
    assert not np.any(a["final_state"].values == b["final_state"].values)
    assert np.allclose(b["time"].values, a["time"].values + BASE["dt"])
    f = dict(n_paths=20, precision=ms.Precision.FLOAT32)
    assert not np.any(_run(**f)["final_state"].values == _run(**f, step_offset=2**40)["final_state"].values)


@pytest.mark.parametrize("bad", [-1, 1.5, "3", True])
def test_bad_step_offset_raises(bad):
    with pytest.raises(ValueError, match=re.escape(f"step_offset={bad!r}")):
        _run(n_paths=2, step_offset=bad)


def test_step_offset_range():
    n_steps = round(BASE["t_end"] / BASE["dt"])
    last = _run(n_paths=2, step_offset=2**63 - 1 - n_steps)  # the last step keys 2**63 - 2
    assert np.all(last["status"].values == 0)
    with pytest.raises(ValueError, match=re.escape(f"step_offset + n_steps = {2**63} must be < 2**63")):
        _run(n_paths=2, step_offset=2**63 - n_steps)


_SMALL_TEAM_CHILD = """
import hashlib, numpy as np, multiscale as ms
from multiscale.validate import first_passage
from multiscale.averaging import AveragingEstimator, AveragingOptions
h = hashlib.sha256()
r = first_passage("double_well", params={"sigma": 0.5}, x0=-1.0, hi=1.0, dt=1e-2, n_paths=300, max_time=50.0,
                  seed=4, threads=2)
h.update(r.outcome.tobytes()); h.update(r.time.tobytes())
ds = ms.simulate("tilted_double_well", eps=0.05, dt=1e-3, t_end=0.5, n_paths=64, seed=4, threads=2)
h.update(ds["final_state"].values.tobytes())
est = AveragingEstimator(AveragingOptions(dt=0.05, burn_in=1.0, time=10.0, replicas=4, batch=2.0), seed=4,
                         threads=2)
est.fit("fast_ou_linear", np.linspace(-1, 1, 3))
h.update(np.asarray(est.result_["F"].values).tobytes())
print(h.hexdigest())
"""


def test_kernels_finish_and_agree_when_the_runtime_gives_fewer_threads():
    """OpenMP may give a smaller team than asked for (OMP_DYNAMIC on a loaded machine,
    OMP_THREAD_LIMIT): every kernel must still finish (the first-passage launcher once waited
    forever for the missing threads) and give the same numbers."""
    env = dict(os.environ, PYTHONPATH=str(Path(ms.__file__).resolve().parents[1]))
    out = {}
    for name, extra in (("full", {}), ("limited", {"OMP_THREAD_LIMIT": "1", "OMP_DYNAMIC": "true"})):
        r = subprocess.run([sys.executable, "-c", _SMALL_TEAM_CHILD], env=dict(env, **extra), capture_output=True,
                           text=True, cwd=tempfile.gettempdir(), timeout=300)  # a hang guard, not a timing test
        assert r.returncode == 0, (name, r.stderr)
        out[name] = r.stdout.strip()
    assert out["full"] == out["limited"]
