"""User models compiled just in time: bitwise equal to the catalogue, cached across processes,
rebuilt when corrupt, safe under concurrent first use."""
from __future__ import annotations

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

MODELS = {
    "fast_ou_linear": (ms.Model("fou", slow={"x": "x - x^3 + c*y"}, fast={"y": "-(y - x)"},
                                slow_noise={"x": "sigma"}, fast_noise={"y": "sqrt(2)"},
                                params={"c": 0.5, "sigma": 1.0}, scaling="averaging", default_eps=0.01),
                       dict(eps=0.01, dt=1e-3), None),
    "tilted_double_well": (ms.Model("tdw", slow={"x": "a0 - x + lam*y"}, fast={"y": "-(y^3 - y - lam*x)"},
                                    slow_noise={"x": "sqrt(2)"}, fast_noise={"y": "sqrt(2)"},
                                    params={"a0": 0.1, "lam": 1.5}, scaling="averaging", default_eps=0.03),
                           dict(eps=0.03, dt=1e-3), None),
    "fast_ou_noise": (ms.Model("foun", slow={"x": "-x - x^3"}, slow_drift0={"x": "sqrt(1 + x^2)*y"},
                               fast={"y": "-y"}, fast_noise={"y": "sqrt(2)"}, scaling="homogenization",
                               default_eps=0.05),
                      dict(eps=0.05, dt=2e-4), None),
    "lorenz96": (ms.Model("l96",
                          slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F - (h*c/b)*sum(Y[k*J + j], j, 0, J)"},
                          fast={"Y[i]": "-c*b*Y[i+1]*(Y[i+2] - Y[i-1]) - c*Y[i] + (h*c/b)*X[i//J]"},
                          slow_noise={"X": "sigma_x"}, fast_noise={"Y": "sigma_y"}, sizes={"X": "K", "Y": "K*J"},
                          params={"K": 8, "J": 32, "h": 1.0, "b": 10.0, "c": 10.0, "F": 20.0, "sigma_x": 0.0,
                                  "sigma_y": 0.0}, scaling="none"),
                 dict(dt=2e-4), dict(K=4, J=3, sigma_x=0.5, sigma_y=0.5)),
}


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    old = os.environ.get("MULTISCALE_CACHE")
    path = tmp_path_factory.mktemp("jitcache")
    os.environ["MULTISCALE_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("MULTISCALE_CACHE")
    else:
        os.environ["MULTISCALE_CACHE"] = old


@pytest.mark.parametrize("name", list(MODELS))
def test_user_model_bitwise_equals_catalogue(name):
    model, kw, params = MODELS[name]
    info = ms.get_model(name)
    m, n = info.dims(params)
    args = dict(kw, t_end=200 * kw["dt"], n_paths=64, seed=3, save_every=50, fast_step=E, params=params,
                x0=np.linspace(0.5, 1.5, m), y0=np.linspace(-0.5, 0.5, n))
    ref = ms.simulate(name, **args)
    got = ms.simulate(model, **args)
    assert np.array_equal(ref["trajectory"].values, got["trajectory"].values)
    assert np.array_equal(ref["final_state"].values, got["final_state"].values)


@pytest.mark.parametrize("name", ["fast_ou_linear", "fast_ou_noise"])
def test_ou_fast_drift_gets_the_exact_ou_step(name):
    """A fast drift written -(y - m(x)) or -y is recognised as OU: the default fast step is then
    the exact OU transition, as for the catalogue model, and the paths are bitwise equal."""
    model, kw, params = MODELS[name]
    assert ms.get_model(model).exact_ou
    args = dict(kw, t_end=200 * kw["dt"], n_paths=64, seed=9, save_every=50, x0=0.7, y0=0.2)
    assert np.array_equal(ms.simulate(name, **args)["trajectory"].values,
                          ms.simulate(model, **args)["trajectory"].values)
    assert not ms.get_model(MODELS["tilted_double_well"][0]).exact_ou


def _child(code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                          text=True, timeout=300)


_CHILD = """
    import time, multiscale as ms
    from multiscale.models import _jit
    m = ms.Model("fou", slow={"x": "x - x^3 + c*y"}, fast={"y": "-(y - x)"}, slow_noise={"x": "sigma"},
                 fast_noise={"y": "sqrt(2)"}, params={"c": 0.5, "sigma": 1.0}, scaling="averaging",
                 default_eps=0.01)
    t = time.perf_counter()
    ms.get_model(m)
    print("seconds", time.perf_counter() - t)
    print("final", ms.simulate(m, t_end=0.1, dt=1e-3, n_paths=4, seed=1)["final_state"].values.tobytes().hex())
"""


def test_cache_reused_across_processes_and_rebuilt_when_corrupt(cache):
    first = _child(_CHILD)
    assert first.returncode == 0, first.stderr
    second = _child(_CHILD)
    assert second.returncode == 0, second.stderr
    t2 = float(second.stdout.split()[1])
    assert t2 < 1.0, second.stdout  # loaded, not compiled
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


def test_concurrent_first_use(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(PKG_PARENT), MULTISCALE_CACHE=str(tmp_path / "c"))
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CHILD)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    assert outs[0][0].split("final")[1] == outs[1][0].split("final")[1]
    assert len(list((tmp_path / "c").rglob("build.json"))) == 1
