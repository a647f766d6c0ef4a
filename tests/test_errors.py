"""Bad input is rejected with a ValueError naming the offending value; failing paths are
reported per path (status codes) or raised as SimulationError with the data attached; every
exception and warning of the package is one family, exported from the top level."""
from __future__ import annotations

import ast
import builtins
import warnings
from pathlib import Path

import numpy as np
import pytest

import multiscale as ms

OK = dict(eps=0.01, dt=1e-3, t_end=0.01, n_paths=3, seed=1)


def _sim(model="fast_ou_linear", **kw):
    args = dict(OK) if model == "fast_ou_linear" else dict(dt=1e-3, t_end=0.01, n_paths=3, seed=1)
    args.update(kw)
    return ms.simulate(model, **args)


def test_valid_baseline_runs():
    # the arguments the error tests perturb are themselves valid
    ds = _sim()
    assert ds["final_state"].shape == (3, 2)
    ds = _sim("double_well")
    assert ds["final_state"].shape == (3, 1)


@pytest.mark.parametrize(
    "kw, pattern",
    [
        (dict(eps=0.0), r"eps=0\.0"),
        (dict(eps=-0.5), r"eps=-0\.5"),
        (dict(eps=float("nan")), r"eps=nan"),
        (dict(eps=float("inf")), r"eps=inf"),
        (dict(eps="small"), r"eps='small'"),
        (dict(dt=0.0), r"dt=0\.0"),
        (dict(dt=-1e-3), r"dt=-0\.001"),
        (dict(dt=float("nan")), r"dt=nan"),
        (dict(t_end=0.0105), r"t_end=0\.0105.*dt=0\.001"),
        (dict(t_end=-1.0), r"t_end=-1\.0"),
        (dict(params={"c": float("nan")}), r"parameter c=nan"),
        (dict(params={"bogus": 1.0}), r"unknown parameter 'bogus'"),
        (dict(params={"c": "abc"}), r"parameter c='abc'"),
        (dict(x0=np.zeros((3, 2))), r"x0 has shape \(3, 2\)"),
        (dict(x0=np.zeros(4)), r"x0 has shape \(4,\)"),
        (dict(y0=np.zeros((2, 1))), r"y0 has shape \(2, 1\)"),
        (dict(x0=np.array([0.0, np.nan, 0.0])), r"x0 contains a non-finite value at index \(1, 0\)"),
        (dict(y0=float("inf")), r"y0 contains a non-finite value"),
        (dict(x0="zero"), r"x0='zero'"),
        (dict(n_paths=0), r"n_paths=0"),
        (dict(n_paths=-4), r"n_paths=-4"),
        (dict(n_paths=2.5), r"n_paths=2\.5"),
        (dict(n_paths=True), r"n_paths=True"),
        (dict(save_every=3), r"save_every=3.*10 steps"),
        (dict(save_every=0), r"save_every=0"),
        (dict(save_every=2.0), r"save_every=2\.0"),
        (dict(save_every=2, save_times=[0.0]), r"save_every or save_times"),
        (dict(save_times=[0.0055]), r"save time=0\.0055 is not a multiple of dt=0\.001"),
        (dict(save_times=[0.02]), r"0\.02.*outside \[0, t_end=0\.01\]"),
        (dict(save_times=[[0.0]]), r"save_times must be one-dimensional"),
        (dict(seed=-1), r"seed=-1"),
        (dict(seed=2**64), r"seed=18446744073709551616"),
        (dict(seed=1.5), r"seed=1\.5"),
        (dict(threads=0), r"threads=0"),
        (dict(path_offset=-1), r"path_offset=-1"),
        (dict(path_offset=2**32 - 2), r"path_offset \+ n_paths = 4294967297"),
        (dict(device="gpu"), r"device='gpu'"),
        (dict(device="cuda:x"), r"device='cuda:x'"),
        (dict(fast_step="euler"), r"fast_step='euler'"),
        (dict(precision="float32"), r"precision='float32'"),
        (dict(observables=("x",)), r"observables=\('x',\)"),
        (dict(observables=ms.Observables(("z",))), r"observable 'z'"),
        (dict(observables=ms.Observables(("x",), window=0.003)), r"window=0\.003"),
        (dict(observables=ms.Observables(("x",), window=0.0)), r"Observables\.window=0\.0"),
        (dict(observables=ms.Observables(("x",), start=0.01)), r"Observables\.start=0\.01"),
        (dict(observables=ms.Observables(("x",), start=0.0025)), r"Observables\.start=0\.0025"),
    ],
)
def test_bad_arguments_raise_value_error_naming_value(kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _sim(**kw)


@pytest.mark.parametrize(
    "model, kw, pattern",
    [
        ("double_well", dict(eps=0.1), r"eps=0\.1.*'double_well' does not use eps"),
        ("double_well", dict(params={"sigma": -1.0}), r"sigma=-1 .*must be >= 0"),
        ("lorenz96", dict(params={"K": 2.5}), r"K=2\.5 .*integer"),
        ("lorenz96", dict(params={"K": 3}), r"K=3 .*integer >= 4"),
        ("lorenz96", dict(params={"b": 0.0}), r"b=0 .*nonzero"),
        ("lorenz96", dict(params={"F": float("inf")}), r"F=inf"),
        ("periodic_potential_quadratic", dict(params={"sigma": 0.0}), r"sigma=0 .*must be > 0"),
        ("periodic_potential_quadratic", dict(y0=1.0), r"y0 given"),
        ("tilted_double_well", dict(fast_step=ms.FastStep.EXACT_OU), r"EXACT_OU.*'tilted_double_well'"),
        ("no_such_model", dict(), r"unknown model 'no_such_model'"),
        ("double_well", dict(observables=ms.Observables(("y",))), r"observable 'y'"),
    ],
)
def test_bad_model_arguments(model, kw, pattern):
    with pytest.raises(ValueError, match=pattern):
        _sim(model, **kw)


def test_unknown_model_lists_available():
    with pytest.raises(ValueError, match=r"available: .*fast_ou_linear.*lorenz96"):
        ms.simulate("nope", dt=0.1, t_end=1.0)


@pytest.mark.parametrize(
    "args, pattern",
    [((0, -3.0, 3.0), r"bins=0"), ((-2, -3.0, 3.0), r"bins=-2"), ((2.5, -3.0, 3.0), r"bins=2\.5"),
     ((10, 3.0, 3.0), r"lo=3\.0, hi=3\.0"), ((10, 3.0, -3.0), r"lo=3\.0, hi=-3\.0"),
     ((10, 0.0, float("nan")), r"hi=nan")],
)
def test_bad_histogram(args, pattern):
    with pytest.raises(ValueError, match=pattern):
        ms.Histogram(*args)


def test_bad_observables_definition():
    with pytest.raises(ValueError, match="at least one variable"):
        ms.Observables(())
    with pytest.raises(ValueError, match="at most 8 variables, got 9"):
        ms.Observables(tuple("abcdefghi"))
    assert ms.Observables("x").variables == ("x",)


def test_exact_ou_accepted_where_valid():
    a = _sim(fast_step=ms.FastStep.EXACT_OU)
    b = _sim(fast_step=ms.FastStep.AUTO)
    c = _sim(fast_step=ms.FastStep.EULER)
    assert a.attrs["fast_step"] == b.attrs["fast_step"] == "exact_ou"
    assert c.attrs["fast_step"] == "euler"
    assert np.array_equal(a["final_state"].values, b["final_state"].values)
    assert not np.array_equal(a["final_state"].values, c["final_state"].values)


@pytest.mark.no_cuda
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_unavailable(device):
    with pytest.raises(ms.DeviceUnavailableError, match=r"(?i)cuda") as info:
        _sim(device=device)
    assert device in str(info.value)
    assert not isinstance(info.value, ValueError)


# ---------------------------------------------------------------------------------------------
# per-path status

X0 = np.array([0.0, 100.0, 0.0, 1e3, 0.5]).reshape(5, 1)
FAIL = dict(params={"sigma": 0.0}, dt=0.5, t_end=5.0, x0=X0, n_paths=5, save_every=1)


def test_status_codes_without_throw():
    ds = ms.simulate("double_well", throw=False, **FAIL)
    status = ds["status"].values
    fail = ds["fail_step"].values
    assert status.dtype == np.int8
    assert status.tolist() == [0, 1, 0, 1, 0]
    assert ds["status"].attrs["flag_meanings"].split()[1] == "NONFINITE"
    assert ds.attrs["n_failed"] == 2
    bad = status != 0
    assert np.all(fail[bad] >= 0) and np.all(fail[bad] < 10)
    assert np.all(fail[~bad] == -1)

    final = ds["final_state"].values[:, 0]
    traj = ds["trajectory"].values[:, :, 0]
    t = ds["time"].values
    assert np.all(np.isfinite(final))
    # sigma = 0 and x0 = 0: an exact equilibrium
    assert final[0] == 0.0 and final[2] == 0.0
    assert np.all(traj[[0, 2]] == 0.0)
    assert final[4] == pytest.approx(1.0, abs=1e-12)
    # the healthy paths are what they would be alone
    alone = ms.simulate("double_well", params={"sigma": 0.0}, dt=0.5, t_end=5.0, x0=0.5, n_paths=1,
                        path_offset=4, save_every=1)
    assert np.array_equal(alone["trajectory"].values[0], ds["trajectory"].values[4])
    for p in np.flatnonzero(bad):
        k = fail[p]  # step k -> k+1 was not finite: states up to t = k dt are kept
        assert np.all(np.isfinite(traj[p, t <= k * 0.5]))
        assert np.all(np.isnan(traj[p, t > k * 0.5]))
        assert final[p] == traj[p, k]  # last finite state
        assert abs(final[p]) > 1e100


def test_status_codes_with_throw():
    with pytest.raises(ms.SimulationError, match=r"2 of 5.*NONFINITE") as info:
        ms.simulate("double_well", **FAIL)
    err = info.value
    assert isinstance(err, RuntimeError)
    ds = err.dataset
    assert ds is not None
    assert ds["status"].values.tolist() == [0, 1, 0, 1, 0]
    ref = ms.simulate("double_well", throw=False, **FAIL)
    for name in ("trajectory", "final_state", "fail_step"):
        assert np.array_equal(ds[name].values, ref[name].values, equal_nan=name == "trajectory")
    assert "first at step 4" in str(err) and "path 1" in str(err)


def test_failed_paths_contribute_only_their_live_states_to_observables():
    """Window statistics and histograms describe one population: the path-states at which the
    path was live. Failed paths contribute their states before the failure, no more."""
    obs = ms.Observables(("x",), window=None, histogram=ms.Histogram(4, -2.0, 2.0))
    ds = ms.simulate("double_well", throw=False, observables=obs, **FAIL)
    traj = ds["trajectory"].values[:, 1:, 0]  # states after steps 1..10 (NaN after a failure)
    live = traj[np.isfinite(traj)]
    fail = ds["fail_step"].values
    # a path failing at step s had s live states before it
    assert ds["obs_count"].values[0, 0] == 3 * 10 + int(fail[fail >= 0].sum()) == live.size
    np.testing.assert_allclose(ds["obs_mean"].values[0, 0], live.mean(), rtol=1e-13)
    # the failed paths passed |x| > 1e160 before failing: their squares overflow, as in NumPy
    with np.errstate(over="ignore"):
        assert np.isinf(live.var(ddof=1))
    assert np.isinf(ds["obs_var"].values[0, 0])
    total = (ds["hist_count"].values.sum(axis=-1) + ds["hist_underflow"].values
             + ds["hist_overflow"].values)
    assert total[0, 0] == ds["obs_count"].values[0, 0]


def test_out_of_range_save_time_message_is_plain():
    with pytest.raises(ValueError, match=r"^save time 0\.02 is outside"):
        _sim(save_times=[0.0, 0.02])


def test_window_shorter_than_dt():
    with pytest.raises(ValueError, match=r"window=1e-11"):
        ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=3,
                    observables=ms.Observables(("x",), window=1e-11))


def test_t_end_much_smaller_than_dt():
    with pytest.raises(ValueError, match=r"t_end=1e-10"):
        ms.simulate("double_well", dt=1.0, t_end=1e-10, n_paths=3)


def test_numpy_integers_accepted():
    ds = ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=np.int64(3), seed=np.uint64(2**63 + 5),
                     threads=np.int32(1), save_every=np.int64(5))
    assert ds.attrs["seed"] == str(2**63 + 5) and ds.sizes["realization"] == 3
    assert ds.sizes["time"] == 3


def test_histogram_accepts_numpy_integer_bins():
    h = ms.Histogram(np.int64(20), -3.0, 3.0)
    assert int(h.bins) == 20


def test_histogram_counts_same_population_as_mean_when_paths_fail():
    obs = ms.Observables(("x",), histogram=ms.Histogram(4, -2.0, 2.0))
    ds = ms.simulate("double_well", throw=False, observables=obs, **FAIL)
    total = (ds["hist_count"].values.sum(axis=-1) + ds["hist_underflow"].values
             + ds["hist_overflow"].values)
    assert total[0, 0] == ds["obs_count"].values[0, 0]


@pytest.mark.parametrize("obs", [
    pytest.param(lambda: ms.Observables(("x",), histogram=ms.Histogram(4, np.int64(-2), 2)), id="hist-lo"),
    pytest.param(lambda: ms.Observables(("x",), window=np.float32(0.5)), id="window"),
    pytest.param(lambda: ms.Observables(("x",), start=np.int64(0)), id="start"),
])
def test_observables_with_numpy_scalars(obs):
    ds = ms.simulate("double_well", dt=0.1, t_end=1.0, n_paths=3, observables=obs())
    assert ds["obs_count"].values.sum() > 0


# -- one error family ---------------------------------------------------------------------------

_BUILTIN_BASES = {name for name, obj in vars(builtins).items()
                  if isinstance(obj, type) and issubclass(obj, BaseException)}


def _defined_exception_classes() -> dict[str, str]:
    """Every class of the package (by its source) that derives, directly or through another
    class of the package, from a built-in exception or warning: name -> defining file."""
    root = Path(ms.__file__).parent
    bases: dict[str, tuple[set[str], str]] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                names = {b.id if isinstance(b, ast.Name) else b.attr for b in node.bases
                         if isinstance(b, (ast.Name, ast.Attribute))}
                bases[node.name] = (names, str(path.relative_to(root.parent)))
    found: dict[str, str] = {}
    changed = True
    while changed:  # close over classes deriving from the package's own exceptions
        changed = False
        for name, (parents, where) in bases.items():
            if name not in found and parents & (_BUILTIN_BASES | set(found)):
                found[name] = where
                changed = True
    return found


def test_every_exception_and_warning_is_exported_and_in_the_family():
    found = _defined_exception_classes()
    # the walk sees the classes (one that finds nothing would pass vacuously)
    assert {"MultiscaleError", "SimulationError", "ModelLanguageError", "LagWarning"} <= set(found)
    for name, where in found.items():
        assert name in ms.__all__, f"{name} ({where}) is not exported from multiscale"
        cls = getattr(ms, name)
        assert isinstance(cls, type) and cls.__name__ == name
        if issubclass(cls, Warning):
            assert issubclass(cls, ms.MultiscaleWarning), f"{name} does not derive from MultiscaleWarning"
        else:
            assert issubclass(cls, ms.MultiscaleError), f"{name} does not derive from MultiscaleError"
    exported = {n for n in ms.__all__ if isinstance(getattr(ms, n), type)
                and issubclass(getattr(ms, n), BaseException)}
    assert exported == set(found), "an exported exception is not defined in the package"


@pytest.mark.parametrize("name, builtin", [
    ("SimulationError", RuntimeError), ("DeviceUnavailableError", RuntimeError),
    ("ModelLanguageError", ValueError), ("ModelCompileError", RuntimeError),
    ("SurrogateFormatError", ValueError), ("ExportFormatError", ValueError),
    ("CampaignSpecError", ValueError), ("CampaignError", RuntimeError), ("LagWarning", UserWarning),
])
def test_each_error_keeps_its_builtin_base(name, builtin):
    # existing `except ValueError` / `except RuntimeError` code keeps working
    assert issubclass(getattr(ms, name), builtin)


def test_one_except_catches_the_package_errors():
    with pytest.raises(ms.MultiscaleError):
        ms.Model("bad", slow={"x": "x +"})
    with pytest.raises(ms.MultiscaleError):
        ms.load_model_file("/nonexistent/model.toml")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ms.MultiscaleWarning):
            warnings.warn("lag", ms.LagWarning)


# -- the shared argument checks (multiscale/_checks.py) ------------------------------------------

def test_argument_checks_return_plain_values():
    from multiscale import _checks as c

    assert c.finite("x", np.float32(1.5)) == 1.5 and type(c.finite("x", np.float32(1.5))) is float
    assert c.positive_finite("dt", 1) == 1.0
    assert c.nonnegative_finite("t", 0) == 0.0
    assert c.integer("n", np.int64(3), 1) == 3 and type(c.integer("n", np.int64(3), 1)) is int
    assert c.whole_number("n", 5.0, 5) == 5
    assert c.finite_interval(0, 1) == (0.0, 1.0)
    np.testing.assert_array_equal(c.increasing_array("edges", [0, 1, 3]), [0.0, 1.0, 3.0])


@pytest.mark.parametrize("check, args, pattern", [
    ("finite", ("x", float("inf")), r"x=inf must be finite"),
    ("finite", ("x", "1.0"), r"x='1\.0' must be a number"),
    ("finite", ("x", None), r"x=None must be a number"),
    ("positive_finite", ("dt", 0.0), r"dt=0\.0 must be a finite number > 0"),
    ("positive_finite", ("dt", float("nan")), r"dt=nan must be a finite number > 0"),
    ("positive_finite", ("dt", True), r"dt=True must be a number"),
    ("nonnegative_finite", ("burn_in", -1), r"burn_in=-1 must be a finite number >= 0"),
    ("integer", ("n_paths", 0, 1), r"n_paths=0 must be an integer >= 1"),
    ("integer", ("n_paths", 2.0, 1), r"n_paths=2\.0 must be an integer >= 1"),
    ("integer", ("n_paths", True, 1), r"n_paths=True must be an integer >= 1"),
    ("seed", ("seed", 2**64), r"seed=18446744073709551616 must be an integer in \[0, 2\*\*64\)"),
    ("seed", ("seed", -1), r"seed=-1 must be an integer >= 0"),
    ("whole_number", ("n", 2.5, 1), r"n=2\.5 must be an integer >= 1"),
    ("whole_number", ("n", float("nan"), 1), r"n=nan must be an integer >= 1"),
    ("finite_interval", (1.0, 0.0), r"lo=1\.0 and hi=0\.0 must be finite with lo < hi"),
    ("finite_interval", (0.0, float("inf"), ("a", "b")), r"a=0\.0 and b=inf must be finite with a < b"),
    ("increasing_array", ("edges", [0.0]), r"edges must be 1-D with at least 2 entries; got shape \(1,\)"),
    ("increasing_array", ("edges", [0.0, np.nan]), r"edges must be finite; got nan"),
    ("increasing_array", ("grid", [0.0, 2.0, 1.0], 3), r"grid\[1\]=2\.0, grid\[2\]=1\.0"),
])
def test_argument_checks_name_the_value(check, args, pattern):
    from multiscale import _checks

    with pytest.raises(ValueError, match=pattern):
        getattr(_checks, check)(*args)
