"""User models compiled just in time: bitwise equal to the catalogue, cached across processes,
rebuilt when corrupt, safe under concurrent first use."""
from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms

PKG_PARENT = Path(ms.__file__).resolve().parents[1]
E = ms.FastStep.EULER

from multiscale.models._catalog_source import SOURCES  # noqa: E402

# Every catalogue model written in the model language; Lorenz-96 small and noisy (the Euler
# noise path) and at its defaults (deterministic: no normals drawn).
SMALL_L96 = dict(K=4, J=3, sigma_x=0.5, sigma_y=0.5)
# One model in the fast suite; every model (a C++ build each, ~10 s) with pytest -m slow.
MODELS = [n if n == "tilted_double_well" else pytest.param(n, marks=pytest.mark.slow) for n in SOURCES]


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """A fresh cache; CPU-only builds (the CUDA build is tested once, below: nvcc for every
    model would double the compile time of this module)."""
    old = {k: os.environ.get(k) for k in ("MULTISCALE_CACHE", "MULTISCALE_JIT_CUDA")}
    path = tmp_path_factory.mktemp("jitcache")
    os.environ["MULTISCALE_CACHE"] = str(path)
    os.environ["MULTISCALE_JIT_CUDA"] = "0"
    yield path
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_cuda_build_of_a_user_model(monkeypatch):
    """Where nvcc is found, the same model is compiled as device code too; its CPU paths stay
    bitwise the catalogue's, and on a GPU its CUDA paths equal the catalogue's CUDA paths."""
    import shutil

    if shutil.which(os.environ.get("NVCC", "nvcc")) is None:
        pytest.skip("nvcc not found: user models are built for the CPU only")
    monkeypatch.setenv("MULTISCALE_JIT_CUDA", "1")
    model = ms.get_model("fast_ou_linear").model
    info = ms.get_model(model)
    assert info.core.build_info()["cuda_compiled"]
    args = _args("fast_ou_linear", None, ms.Precision.FLOAT64, None)
    assert np.array_equal(ms.simulate("fast_ou_linear", **args)["trajectory"].values,
                          ms.simulate(model, **args)["trajectory"].values)
    if ms.build_info()["cuda_devices"] > 0:
        ref = ms.simulate("fast_ou_linear", **args, device="cuda")["trajectory"].values
        got = ms.simulate(model, **args, device="cuda")["trajectory"].values
        assert np.array_equal(ref, got)


def _args(name: str, params, precision, fast_step, seed=3):
    info = ms.get_model(name)
    m, n = info.dims(params)
    dt = 2e-4 if name in ("lorenz96", "fast_ou_noise") else 1e-3
    args = dict(t_end=200 * dt, dt=dt, n_paths=64, seed=seed, save_every=50, params=params, precision=precision,
                x0=np.linspace(0.5, 1.5, m), y0=np.linspace(-0.5, 0.5, n) if n else None)
    if fast_step is not None:
        args["fast_step"] = fast_step
    return args


@pytest.mark.parametrize("name", MODELS)
def test_catalogue_in_the_language_is_bitwise_the_catalogue(name):
    """Each catalogue model's language form, compiled just in time, gives bitwise the built-in
    model's paths: both precisions, the Euler and the default (exact OU where linear) fast step."""
    info = ms.get_model(name)
    user = ms.get_model(info.model)
    assert user.core is not None and user.exact_ou == info.exact_ou and user.uses_eps == info.uses_eps
    assert user.scaling == info.scaling and user.param_names == info.param_names
    n = info.dims(SMALL_L96 if name == "lorenz96" else None)[1]
    for params in ([SMALL_L96, None] if name == "lorenz96" else [None]):
        for precision in (ms.Precision.FLOAT64, ms.Precision.FLOAT32):
            for fast_step in ((E, None) if n else (None,)):
                args = _args(name, params, precision, fast_step)
                ref = ms.simulate(name, **args)
                got = ms.simulate(info.model, **args)
                assert np.array_equal(ref["trajectory"].values, got["trajectory"].values), (params, precision)
                assert np.array_equal(ref["final_state"].values, got["final_state"].values)
                assert np.array_equal(ref["status"].values, got["status"].values)


@pytest.mark.parametrize("name", MODELS)
def test_torch_evaluation_matches_compiled_coefficients(name):
    """The differentiable torch evaluation of the parsed model equals the compiled coefficients
    (the catalogue's C++ and the generated code) to 1e-12 relative (values above 1)."""
    torch = pytest.importorskip("torch")
    info = ms.get_model(name)
    params = dict(K=4, J=3, sigma_x=0.5, sigma_y=0.3) if name == "lorenz96" else None
    m, n = info.dims(params)
    rng = np.random.default_rng(5)
    x, y = 2 * rng.normal(size=(40, m)), 2 * rng.normal(size=(40, n))
    ref = info.coefficients(x, y if n else None, params=params)
    gen = ms.get_model(info.model).coefficients(x, y if n else None, params=params)
    fn = info.model.torch_functions(params=params, eps=info.default_eps)
    X, Y = torch.tensor(x), (torch.tensor(y) if n else None)
    got = {"f": fn.slow_drift(X, Y), "a": fn.slow_noise(X, Y), "f0": fn.slow_drift0(X, Y)}
    if n:
        got.update(g=fn.fast_drift(X, Y), b=fn.fast_noise(X, Y))
    for k, v in got.items():
        v = v.detach().numpy()
        # Host evaluation outside the integrators: gcc may contract a*b + c into an FMA
        # differently in the two modules (1 ulp); the integrated paths above are bitwise equal.
        np.testing.assert_allclose(gen[k], ref[k], rtol=4e-16 * 8, atol=1e-300)
        assert np.all(np.abs(v - ref[k]) <= 1e-12 * np.maximum(1.0, np.abs(ref[k]))), (k, np.abs(v - ref[k]).max())


def test_coefficients_bad_shapes_are_named():
    info = ms.get_model("fast_ou_linear")
    with pytest.raises(ValueError, match="fast variables: give y"):
        info.coefficients([[0.1]])
    with pytest.raises(ValueError, match=r"y has shape \(3,\)"):
        info.coefficients([[0.1], [0.2]], [0.0, 0.1, 0.2])


def test_user_model_in_averaging_and_first_passage_is_bitwise_the_catalogue():
    """The frozen-average and first-passage kernels dispatch to the user model too."""
    from multiscale.validate import first_passage

    opts = ms.AveragingOptions(dt=1e-3, burn_in=0.5, time=2.0, replicas=2, batch=0.5)
    pts = np.array([[-1.0], [0.3], [1.2]])
    ref = ms.AveragingEstimator(opts, seed=4).fit("fast_ou_linear", pts).result_
    got = ms.AveragingEstimator(opts, seed=4).fit(ms.get_model("fast_ou_linear").model, pts).result_
    for v in ("F", "A"):
        assert np.array_equal(ref[v].values, got[v].values)
    kw = dict(x0=-1.0, dt=1e-3, n_paths=200, max_time=5.0, hi=0.5, seed=2, params={"sigma": 0.8})
    a = first_passage("double_well", **kw)
    b = first_passage(ms.get_model("double_well").model, **kw)
    assert np.array_equal(a.time, b.time, equal_nan=True) and np.array_equal(a.outcome, b.outcome)
    assert (a.outcome == 1).sum() > 20  # some paths crossed: the test compares passages
    assert np.array_equal(a.final_state, b.final_state)


def test_compile_error_names_the_field_and_expression(monkeypatch, tmp_path):
    """A generated line that fails to compile is reported as a model error: the user's field and
    expression, the compiler's message and the generated line."""
    from multiscale.models import _codegen, _jit

    monkeypatch.setenv("MULTISCALE_CACHE", str(tmp_path))
    monkeypatch.setitem(_codegen._FN, "tanh", "no_such_function")  # as if the generator were wrong
    m = ms.Model("broken", slow={"x": "-x"}, fast={"y": "-(y - tanh(x))"}, fast_noise={"y": "1"})
    with pytest.raises(_jit.ModelCompileError) as e:
        ms.get_model(m)
    msg = str(e.value)
    assert "model 'broken'" in msg and "fast drift of y: -(y - tanh(x))" in msg, msg
    assert "no_such_function" in msg and "generated line" in msg, msg
    assert not list(tmp_path.rglob("_msjit_*.so"))  # nothing half-built left to load


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_identifiers_cannot_clash_with_cpp():
    """Index variables and names that are C++ keywords or the generator's own names compile."""
    m = ms.Model("clash", slow={"X[int]": "-X[int] + sum(Y[int*J + auto], auto, 0, J)"},
                 fast={"Y[new]": "-Y[new] + X[new//J]"}, fast_noise={"Y": "double"}, sizes={"X": "K", "Y": "K*J"},
                 params={"K": 3, "J": 2, "double": 0.5}, scaling="averaging", default_eps=0.1)
    ds = ms.simulate(m, t_end=0.01, dt=1e-3, n_paths=4, seed=1)
    assert np.isfinite(ds["final_state"].values).all()


def _child(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, cwd=PKG_PARENT,
                          text=True, timeout=300)


_CHILD = """
    import multiscale as ms
    from multiscale.models import _jit
    m = ms.Model("fou", slow={"x": "x - x^3 + c*y"}, fast={"y": "-(y - x)"}, slow_noise={"x": "sigma"},
                 fast_noise={"y": "sqrt(2)"}, params={"c": 0.5, "sigma": 1.0}, scaling="averaging",
                 default_eps=0.01)
    compiles = []  # the event that tells a cache hit from a build: the compiler is never called
    _compile = _jit._compile
    _jit._compile = lambda *a, **k: (compiles.append(1), _compile(*a, **k))[1]
    ms.get_model(m)
    print("compiles", len(compiles))
    print("final", ms.simulate(m, t_end=0.1, dt=1e-3, n_paths=4, seed=1)["final_state"].values.tobytes().hex())
"""


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_cache_reused_across_processes_and_rebuilt_when_corrupt(cache):
    first = _child(_CHILD)
    assert first.returncode == 0, first.stderr
    second = _child(_CHILD)
    assert second.returncode == 0, second.stderr
    assert first.stdout.split()[:2] == ["compiles", "1"], first.stdout
    assert second.stdout.split()[:2] == ["compiles", "0"], second.stdout  # loaded, not compiled
    assert first.stdout.split("final")[1] == second.stdout.split("final")[1]
    libs = list(cache.rglob("_msjit_*.so"))
    assert libs
    for lib in libs:  # truncated copies put in place (this process has the original mapped)
        tmp = lib.with_suffix(".cut")
        tmp.write_bytes(lib.read_bytes()[:1000])
        os.replace(tmp, lib)
    third = _child(_CHILD)
    assert third.returncode == 0, third.stderr
    assert third.stdout.split("final")[1] == first.stdout.split("final")[1]


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_concurrent_first_use(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT), MULTISCALE_CACHE=str(tmp_path / "c"))
    with contextlib.ExitStack() as stack:  # both children closed and reaped on every path
        procs = [stack.enter_context(subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD)], env=env,
                                                      cwd=PKG_PARENT, stdout=subprocess.PIPE,
                                                      stderr=subprocess.PIPE, text=True)) for _ in range(2)]
        try:
            outs = [p.communicate(timeout=300) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert outs[0][0].split("final")[1] == outs[1][0].split("final")[1]
    assert len(list((tmp_path / "c").rglob("build.json"))) == 1


# ----- the exact limit from the model's declared facts -----------------------------------------
@pytest.mark.parametrize("name", ["tilted_double_well", "fast_ou_linear", "double_well", "ornstein_uhlenbeck"])
def test_exact_limit_of_a_user_model_from_its_declared_facts(name):
    """Averaging with a declared fast invariant density: F = E[f], A = E[alpha^2] by quadrature,
    against the catalogue's closed forms (problem 1a: (1+c)x - x^3; problem 2: its own quadrature
    of m(s)); single-scale models are their own limit."""
    from multiscale.validate import exact_limit

    x = np.linspace(-2.5, 2.5, 51)
    ref = exact_limit(name, {"c": 0.7} if name == "fast_ou_linear" else None)
    got = exact_limit(ms.get_model(ms.get_model(name).model), {"c": 0.7} if name == "fast_ou_linear" else None)
    np.testing.assert_allclose(got.drift(x), ref.drift(x), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got.diffusion(x), ref.diffusion(x), rtol=1e-10, atol=1e-10)
    if name == "fast_ou_linear":
        np.testing.assert_allclose(got.drift(x), 1.7 * x - x**3, rtol=1e-10, atol=1e-10)


def test_no_exact_limit_without_the_facts():
    from multiscale.validate import exact_limit

    base = ms.get_model("fast_ou_linear").model
    no_density = dataclasses.replace(base, fast_invariant_density=None)
    assert exact_limit(ms.get_model(no_density)) is None
    wide = dataclasses.replace(base, fast_invariant_density="exp(-(y - x)^2/2000)")  # not inside +-30
    assert exact_limit(ms.get_model(wide)) is None
    # eps in a single-scale model's coefficients: the model is not its own eps -> 0 limit
    assert exact_limit(ms.get_model(ms.get_model("periodic_potential_quadratic").model)) is None


# ----- every CLI command and the campaign spec take a model file --------------------------------
def _write_model(path: Path, name: str) -> Path:
    path.write_text(ms.get_model(name).model.to_toml())
    return path


def test_cli_model_file_on_every_command(tmp_path, capsys):
    """models, simulate, average and run take --model-file; the results equal the catalogue's
    (the file holds the catalogue model's language form), and a bad file is a clear error."""
    from multiscale import cli

    f = _write_model(tmp_path / "tdw.toml", "tilted_double_well")
    assert cli.main(["models", "--model-file", str(f)]) == 0
    assert "x = [(a0 - x + lam*y)] dt" in capsys.readouterr().out.replace("dx", "x")
    sim = ["simulate", "--t-end", "0.2", "--dt", "1e-3", "--paths", "32", "--seed", "4", "--save-every", "50"]
    assert cli.main([*sim, "--model-file", str(f), "--out", str(tmp_path / "u.nc")]) == 0
    assert cli.main([*sim, "--model", "tilted_double_well", "--out", str(tmp_path / "c.nc")]) == 0
    u, c = ms.open_dataset(tmp_path / "u.nc"), ms.open_dataset(tmp_path / "c.nc")
    assert np.array_equal(u["trajectory"].values, c["trajectory"].values)
    avg = ["average", "--points=-1:1:3", "--dt", "0.01", "--burn-in", "1", "--time", "5", "--replicas", "2",
           "--batch", "1", "--eps", "0.03"]
    assert cli.main([*avg, "--model-file", str(f), "--out", str(tmp_path / "ua.nc")]) == 0
    assert cli.main([*avg, "--model", "tilted_double_well", "--out", str(tmp_path / "ca.nc")]) == 0
    assert np.array_equal(ms.open_dataset(tmp_path / "ua.nc")["F"].values,
                          ms.open_dataset(tmp_path / "ca.nc")["F"].values)
    bad = tmp_path / "bad.toml"
    bad.write_text('[model]\nname = "b"\n[model.slow]\nx = "x + __import__(\'os\')"\n')
    assert cli.main(["simulate", "--model-file", str(bad), "--t-end", "1", "--dt", "0.1", "--out",
                     str(tmp_path / "b.nc")]) == 2
    err = capsys.readouterr().err
    assert "bad.toml" in err and "__import__" in err and not (tmp_path / "b.nc").exists()


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_cli_run_pipeline_on_a_model_file(tmp_path):
    """The main job on a user model: every stage runs, and validation uses the exact limit from
    the declared fast invariant density."""
    import json

    from multiscale import cli

    f = _write_model(tmp_path / "tdw.toml", "tilted_double_well")
    assert cli.main(["run", "--quick", "--model-file", str(f), "--out", str(tmp_path / "run"), "--seed", "1"]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["config"]["model"]["slow"] == {"x": "a0 - x + lam*y"}
    assert summary["estimates"]["rms_z_F"] < 3.0  # estimates against the quadrature limit
    assert (tmp_path / "run" / "surrogate.mss").is_file()


@pytest.mark.slow  # compile-heavy: runs with pytest -m slow
def test_campaign_model_file(tmp_path):
    """campaign.model_file (relative to the spec) runs a user model; its tasks equal direct
    simulate calls; the merged dataset carries the definition; an edited model is refused on resume."""
    from multiscale.campaign import load_spec, run_campaign, simulate_direct_kwargs
    from multiscale.campaign._store import CampaignError

    _write_model(tmp_path / "m.toml", "fast_ou_linear")
    spec = tmp_path / "spec.toml"
    spec.write_text('[campaign]\nname = "u"\nseed = 5\nmodel_file = "m.toml"\n[grid]\neps = [0.01, 0.02]\n'
                    '[simulate]\nt_end = 0.1\ndt = 0.001\nn_paths = 16\npaths_per_task = 8\nsave_every = 0.05\n')
    s = load_spec(spec)
    assert s.model_name == "fast_ou_linear" and not isinstance(s.model, str)
    run_campaign(spec, tmp_path / "out", progress=False)
    merged = ms.open_dataset(tmp_path / "out" / "campaign.nc")
    assert "a0" not in merged.attrs["model_toml"] and 'x = "x - x^3 + c*y"' in merged.attrs["model_toml"]
    for g in s.grid():  # the user model's tasks equal the catalogue model's direct run
        kw = simulate_direct_kwargs(s, s.tasks_of(g, "simulate")[0])
        direct = ms.simulate("fast_ou_linear", **kw, n_paths=16)
        assert np.array_equal(merged["trajectory"].isel(grid=g.index).values, direct["trajectory"].values)
    (tmp_path / "m.toml").write_text((tmp_path / "m.toml").read_text().replace("c = 0.5", "c = 0.6"))
    with pytest.raises(CampaignError, match="spec"):
        run_campaign(spec, tmp_path / "out", progress=False)
    missing = tmp_path / "spec2.toml"
    missing.write_text(spec.read_text().replace("m.toml", "nope.toml"))
    with pytest.raises(ValueError, match=r"campaign.model_file.*nope.toml"):
        load_spec(missing)
