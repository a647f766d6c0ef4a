"""The reference datasets in data/ match a fresh computation by the package, so they cannot rot.

data/ lives in the repository, not in the installed package: without it (an installed package
run outside the repository) these tests skip.
"""
from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).resolve().parents[1] / "data"
pytestmark = pytest.mark.skipif(not (DATA / "README.md").is_file(),
                                reason="data/ not present (installed package without the repository)")


def _script(name: str):
    """Import data/<name>.py (the script that regenerates a file) as a module."""
    spec = importlib.util.spec_from_file_location(f"_data_{name}", DATA / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_reference_values_match_the_package():
    stored = json.loads((DATA / "reference_values.json").read_text())
    fresh = json.loads(json.dumps(_script("make_reference_values").compute()))  # same JSON round trip
    assert stored.keys() == fresh.keys()
    assert stored["entries"].keys() == fresh["entries"].keys()
    for key, s in stored["entries"].items():
        f = fresh["entries"][key]
        assert s["params"] == f["params"] and s["function"] == f["function"], key
        assert s["values"].keys() == f["values"].keys(), key
        for name, v in s["values"].items():
            # relative 1e-10; values that are zero by symmetry (E[X^1], F(0)) to 1e-14 absolute
            assert math.isclose(v, f["values"][name], rel_tol=1e-10, abs_tol=1e-14), (key, name, v, f["values"][name])


def test_lorenz96_short_is_reproduced_bitwise():
    xr = pytest.importorskip("xarray")
    pytest.importorskip("scipy")
    mod = _script("make_lorenz96_short")
    with xr.open_dataset(DATA / "lorenz96_short.nc", engine="scipy") as ds:
        stored = ds.load()
    settings = json.loads(stored.attrs["settings_json"])
    assert settings == mod.SETTINGS
    fresh = mod.compute(settings)
    assert stored.X.shape == (settings["n_paths"], 41, 8)
    for v in ("X", "x0"):
        assert stored[v].dtype == fresh[v].dtype == np.float64
        assert np.array_equal(stored[v].values, fresh[v].values), f"{v} differs from a fresh ms.simulate"
        assert stored[v].values.tobytes() == fresh[v].values.tobytes()
    np.testing.assert_array_equal(stored.time.values, fresh.time.values)
    assert json.loads(stored.attrs["params_json"]) == json.loads(fresh.attrs["params_json"])


def _size_limits() -> dict[str, int]:
    """File -> size limit in bytes, from the table in data/README.md (``| `file` | size | limit | ...``)."""
    limits = {}
    for line in (DATA / "README.md").read_text().splitlines():
        m = re.match(r"\|\s*`([^`]+)`\s*\|[^|]*\|\s*(\d+)\s*kB\s*\|", line)
        if m:
            limits[m[1]] = int(m[2]) * 1000
    return limits


def test_sizes_under_the_documented_limits():
    limits = _size_limits()
    data_files = {p.name for p in DATA.iterdir() if p.is_file() and p.suffix not in (".py", ".md")}
    assert data_files and data_files <= limits.keys(), f"undocumented data files: {data_files - limits.keys()}"
    for name, limit in limits.items():
        size = (DATA / name).stat().st_size
        assert size <= limit, f"{name}: {size} bytes > {limit} (limit in data/README.md)"
