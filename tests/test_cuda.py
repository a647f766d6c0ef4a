"""CUDA kernels against the CPU kernels: the same seed must give the same numbers.

Every random number is a pure function of (seed, path, step), and the CPU and CUDA launchers
share the header-only numerics, so in float64 a GPU run must reproduce the CPU run to rounding
(different FMA contraction and libm can change the last bits, hence ``rtol=1e-12`` rather than
bitwise equality), and repeated or chunked GPU runs must be bitwise identical. Tests marked
``cuda`` skip themselves where no CUDA device is visible; the device-selection errors are
checked everywhere.
"""
from __future__ import annotations

import numpy as np
import pytest

import multiscale as ms


RTOL64, ATOL64 = 1e-12, 1e-12
RTOL32, ATOL32 = 1e-4, 1e-4

# Short runs: 100 paths x 200 steps, saved every 20 steps.
N_PATHS, N_STEPS, SAVE_EVERY = 100, 200, 20

# histogram ranges of the observed variables per case (lorenz96's X lives around F = 20)
HIST_RANGE = {"fast_ou_linear": (-3.0, 3.0), "tilted_double_well": (-4.0, 4.0), "lorenz96": (-10.0, 30.0)}

CASES = {
    "fast_ou_linear": dict(eps=0.01, dt=1e-3),
    "fast_ou_linear_euler": dict(model="fast_ou_linear", eps=0.01, dt=1e-3,
                                 fast_step=ms.FastStep.EULER),
    "fast_ou_noise": dict(eps=0.1, dt=2e-4),
    "tilted_double_well": dict(eps=0.1, dt=1e-3),
    "periodic_potential_quartic": dict(eps=0.2, dt=8e-5),
    "double_well": dict(dt=1e-2),
    # Euler is unstable for the fast advection at dt = 1e-3 (all paths NONFINITE by t ~ 0.13)
    "lorenz96": dict(dt=2e-4, params=dict(K=4, J=3, sigma_x=0.5, sigma_y=0.5)),
}


def _run(case: str, device: str, **kw):
    args = dict(CASES[case])
    model = args.pop("model", case)
    args.update(t_end=N_STEPS * args["dt"], n_paths=N_PATHS, seed=12345, save_every=SAVE_EVERY)
    args.update(kw)
    return ms.simulate(model, device=device, **args)


def _assert_close(cpu, gpu, rtol, atol, names=("trajectory", "final_state")) -> None:
    for name in names:
        a, b = cpu[name].values, gpu[name].values
        assert a.shape == b.shape, name
        assert a.dtype == b.dtype, name
        np.testing.assert_allclose(b, a, rtol=rtol, atol=atol, err_msg=name)
    np.testing.assert_array_equal(gpu["status"].values, cpu["status"].values)
    np.testing.assert_array_equal(gpu["fail_step"].values, cpu["fail_step"].values)


def _assert_identical(a, b, names=("trajectory", "final_state", "status", "fail_step")) -> None:
    for name in names:
        va, vb = a[name].values, b[name].values
        assert va.dtype == vb.dtype and va.shape == vb.shape, name
        assert np.array_equal(va, vb, equal_nan=va.dtype.kind == "f"), name


# ---------------------------------------------------------------------------------------------
# device selection: checked on every machine


def test_nonexistent_cuda_device_raises():
    with pytest.raises(ms.DeviceUnavailableError):
        ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=1e-2, device="cuda:99")


@pytest.mark.no_cuda
def test_cuda_without_device_raises():
    with pytest.raises(ms.DeviceUnavailableError):
        ms.simulate("fast_ou_linear", eps=0.01, dt=1e-3, t_end=1e-2, device="cuda")


# ---------------------------------------------------------------------------------------------
# CPU vs GPU


@pytest.mark.cuda
@pytest.mark.parametrize("case", list(CASES))
def test_gpu_matches_cpu_float64(case):
    cpu = _run(case, "cpu")
    gpu = _run(case, "cuda")
    assert np.all(cpu["status"].values == 0)
    _assert_close(cpu, gpu, RTOL64, ATOL64)
    # the comparison is not trivial: the paths move and differ from each other
    x = cpu["final_state"].values[:, 0]
    assert np.unique(x).size == N_PATHS


@pytest.mark.cuda
def test_gpu_status_codes_match_cpu():
    """Paths started far out blow up (NONFINITE) at the same step on both devices; the others
    finish and agree."""
    x0 = np.linspace(-10.0, 10.0, N_PATHS)
    kw = dict(params={"sigma": 0.4}, dt=0.1, t_end=2.0, n_paths=N_PATHS, seed=3, x0=x0,
              save_every=2, throw=False)
    cpu = ms.simulate("double_well", device="cpu", **kw)
    gpu = ms.simulate("double_well", device="cuda", **kw)
    status = cpu["status"].values
    assert np.any(status == 1) and np.any(status == 0)  # both outcomes occur
    np.testing.assert_array_equal(gpu["status"].values, status)
    np.testing.assert_array_equal(gpu["fail_step"].values, cpu["fail_step"].values)
    ok = status == 0
    np.testing.assert_allclose(gpu["final_state"].values[ok], cpu["final_state"].values[ok],
                               rtol=RTOL64, atol=ATOL64)


@pytest.mark.cuda
@pytest.mark.parametrize("case", ["fast_ou_linear", "tilted_double_well", "lorenz96"])
def test_gpu_observables_match_cpu(case):
    dt = CASES[case]["dt"]
    variables = ("x0", "y0_0") if case == "lorenz96" else ("x", "y")
    lo, hi = HIST_RANGE[case]
    obs = ms.Observables(variables, window=50 * dt, start=0.0,
                         histogram=ms.Histogram(bins=24, lo=lo, hi=hi))
    cpu = _run(case, "cpu", observables=obs)
    gpu = _run(case, "cuda", observables=obs)
    for name in ("obs_count", "hist_count", "hist_underflow", "hist_overflow"):
        np.testing.assert_array_equal(gpu[name].values, cpu[name].values, err_msg=name)
    assert int(cpu["obs_count"].values.min()) == N_PATHS * 50
    assert int(cpu["hist_count"].values.sum()) > 0  # the histogram is not all under/overflow
    np.testing.assert_allclose(gpu["obs_mean"].values, cpu["obs_mean"].values,
                               rtol=RTOL64, atol=ATOL64)
    np.testing.assert_allclose(gpu["obs_var"].values, cpu["obs_var"].values,
                               rtol=RTOL64, atol=ATOL64)


@pytest.mark.cuda
@pytest.mark.parametrize("case", ["fast_ou_linear", "fast_ou_noise", "double_well"])
def test_gpu_matches_cpu_float32(case):
    cpu = _run(case, "cpu", precision=ms.Precision.FLOAT32)
    gpu = _run(case, "cuda", precision=ms.Precision.FLOAT32)
    assert cpu["final_state"].dtype == np.float32
    _assert_close(cpu, gpu, RTOL32, ATOL32)


# ---------------------------------------------------------------------------------------------
# GPU reproducibility


@pytest.mark.cuda
@pytest.mark.parametrize("precision", [ms.Precision.FLOAT64, ms.Precision.FLOAT32])
def test_gpu_repeated_runs_bitwise_identical(precision):
    a = _run("tilted_double_well", "cuda", precision=precision)
    b = _run("tilted_double_well", "cuda", precision=precision)
    _assert_identical(a, b)


@pytest.mark.cuda
@pytest.mark.parametrize("split", [1, 37, 64])
def test_gpu_chunks_bitwise_equal_single_run(split):
    full = _run("fast_ou_linear", "cuda")
    a = _run("fast_ou_linear", "cuda", n_paths=split)
    b = _run("fast_ou_linear", "cuda", n_paths=N_PATHS - split, path_offset=split)
    for name in ("trajectory", "final_state", "status", "fail_step"):
        joined = np.concatenate([a[name].values, b[name].values])
        assert np.array_equal(joined, full[name].values), name


@pytest.mark.cuda
@pytest.mark.parametrize("case", ["tilted_double_well", "lorenz96"])
def test_gpu_continued_run_bitwise_equal_single_run(case):
    """A run stopped at a save step and continued with step_offset reproduces the whole run;
    the GPU continuation also matches the CPU one."""
    split = 4 * SAVE_EVERY
    dt = CASES[case]["dt"]
    info = ms.get_model(CASES[case].get("model", case))
    m, _ = info.dims(info.resolve_params(CASES[case].get("params")))
    full = _run(case, "cuda")
    a = _run(case, "cuda", t_end=split * dt)
    x = a["final_state"].values
    b = _run(case, "cuda", t_end=(N_STEPS - split) * dt, x0=x[:, :m], y0=x[:, m:], step_offset=split)
    assert np.array_equal(b["final_state"].values, full["final_state"].values)
    joined = np.concatenate([a["trajectory"].values, b["trajectory"].values[:, 1:]], axis=1)
    assert np.array_equal(joined, full["trajectory"].values)
    assert np.array_equal(np.concatenate([a["time"].values, b["time"].values[1:]]), full["time"].values)
    cpu = _run(case, "cpu", t_end=(N_STEPS - split) * dt, x0=x[:, :m], y0=x[:, m:], step_offset=split)
    _assert_close(cpu, b, RTOL64, ATOL64)


@pytest.mark.cuda
@pytest.mark.parametrize("case", ["double_well", "tilted_double_well", "lorenz96"])
def test_gpu_first_passages_match_cpu(case):
    """First passages with the bridge test: same noise and decisions as the CPU lanes. A last-bit
    difference can flip a bridge draw at the margin, so outcomes must agree on all but a tiny
    fraction of paths and agree exactly in distribution."""
    from multiscale.validate import first_passage

    args = dict(CASES[case])
    model = args.pop("model", case)
    args.pop("fast_step", None)
    kw = dict(args, x0=None, n_paths=2000, max_time=2.0, seed=7)
    if case == "lorenz96":
        kw.update(lo=19.0, hi=21.0)
    else:
        kw.update(lo=-0.6, hi=0.6, x0=0.0)
    cpu = first_passage(model, device="cpu", **kw)
    gpu = first_passage(model, device="cuda", **kw)
    same = (cpu.outcome == gpu.outcome) & np.isclose(np.nan_to_num(cpu.time), np.nan_to_num(gpu.time))
    assert same.mean() > 0.99, same.mean()
    np.testing.assert_allclose(gpu.final_state[same], cpu.final_state[same], rtol=1e-9, atol=1e-9)
    again = first_passage(model, device="cuda", **kw)
    np.testing.assert_array_equal(again.outcome, gpu.outcome)
    np.testing.assert_array_equal(again.final_state, gpu.final_state)


@pytest.mark.cuda
def test_gpu_ams_matches_cpu():
    from multiscale.validate import AMSOptions, ams

    kw = dict(x0=0.1, a=0.0, b=4.0, seed=3, options=AMSOptions(n_replicas=50, kill=5, n_runs=10, dt=1e-3))
    cpu = ams("ornstein_uhlenbeck", device="cpu", **kw)
    gpu = ams("ornstein_uhlenbeck", device="cuda", **kw)
    assert abs(gpu.probability - cpu.probability) < 4 * np.hypot(cpu.stderr, gpu.stderr)


def test_first_passage_on_a_missing_device_raises():
    from multiscale.validate import first_passage

    with pytest.raises((ValueError, ms.DeviceUnavailableError)):
        first_passage("double_well", x0=0.0, hi=1.0, dt=0.01, n_paths=2, max_time=1.0, device="cuda:7")


@pytest.mark.cuda
def test_gpu_campaign_device_auto(tmp_path):
    """A campaign with device = "auto" runs its tasks on the GPU (one per rank; here rank 0 gets
    cuda:0) and reproduces the CPU campaign to rounding, checkpointed segments included."""
    from multiscale.campaign import load_spec, point_inputs, run_campaign
    from multiscale.campaign._store import Store

    doc = {"campaign": {"name": "gpu", "seed": 4, "model": "tilted_double_well", "device": "auto"},
           "grid": {"eps": [0.05, 0.1]},
           "simulate": {"t_end": 2.0, "dt": 1e-3, "n_paths": 3000, "paths_per_task": 1000, "save_every": 0.5,
                        "checkpoint_seconds": 0.01},
           "average": {"x_points": [-1.0, 0.0, 1.0], "time": 20.0, "replicas": 4, "batch": 2.0}}
    results = {}
    for device in ("auto", "cpu"):
        doc["campaign"]["device"] = device
        spec = load_spec(doc)
        run_campaign(spec, tmp_path / device, progress=False, merge=False)
        results[device] = [point_inputs(spec, Store(tmp_path / device), g, step)
                           for g in spec.grid() for step in ("simulate", "average")]
    for gpu, cpu in zip(results["auto"][::2], results["cpu"][::2]):
        _assert_close(cpu, gpu, RTOL64, ATOL64)
    for gpu, cpu in zip(results["auto"][1::2], results["cpu"][1::2]):
        np.testing.assert_allclose(gpu["F"].values, cpu["F"].values, rtol=1e-9, atol=1e-12)
    rec = (tmp_path / "auto" / "tasks" / "g00000.simulate.000000000-000001000.json").read_text()
    assert '"device": "cuda:0"' in rec


# ---------------------------------------------------------------------------------------------
# learned surrogates in the CUDA launcher


def _surrogate(m: int, gradient: bool):
    import torch

    from multiscale.surrogate import EffectiveSDE

    sde = EffectiveSDE(m, members=3, hidden=(16, 16), gradient=gradient, seed=2)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in sde.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    sde.set_scaling(x_mean=0.0, x_scale=1.0, b_mean=0.0, b_scale=0.5, s_scale=0.5, x_lo=-2.0, x_hi=2.0)
    return sde


@pytest.mark.cuda
@pytest.mark.parametrize("m, gradient, tables", [(1, False, True), (1, True, False), (2, False, False),
                                                 (3, True, False)])
@pytest.mark.parametrize("member", [None, 1, "sample"])
def test_gpu_surrogate_matches_cpu(m, gradient, tables, member):
    """The surrogate as a kernel model: one thread per path on the GPU, SIMD blocks on the CPU,
    the same layer code and noise; float64 agrees to rounding, float32 to its tolerance."""
    sde = _surrogate(m, gradient)
    kw = dict(t_end=0.5, dt=0.01, n_paths=300, seed=4, save_every=10, member=member, tables=tables)
    cpu = sde.simulate(device="cpu", **kw)
    gpu = sde.simulate(device="cuda", **kw)
    np.testing.assert_allclose(gpu.trajectory.values, cpu.trajectory.values, rtol=RTOL64, atol=ATOL64)
    c32 = sde.simulate(device="cpu", precision=ms.Precision.FLOAT32, **kw)
    g32 = sde.simulate(device="cuda", precision=ms.Precision.FLOAT32, **kw)
    np.testing.assert_allclose(g32.trajectory.values, c32.trajectory.values, rtol=RTOL32, atol=ATOL32)


@pytest.mark.cuda
def test_gpu_surrogate_first_passages_match_cpu():
    from multiscale.validate import first_passage

    sde = _surrogate(1, False)
    kw = dict(x0=0.0, lo=-0.8, hi=0.8, dt=0.01, n_paths=2000, max_time=20.0, seed=5)
    cpu = first_passage(sde, device="cpu", **kw)
    gpu = first_passage(sde, device="cuda", **kw)
    same = (cpu.outcome == gpu.outcome) & np.isclose(np.nan_to_num(cpu.time), np.nan_to_num(gpu.time))
    assert same.mean() > 0.99, same.mean()
