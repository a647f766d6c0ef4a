"""One registry per code space: the Python mirrors equal the C++ registries.

``csrc/include/multiscale/status.h`` (Status, Outcome) and ``rng/streams.h`` (Philox streams)
give each code its value; the bindings export them and ``multiscale/_status.py`` /
``multiscale/_streams.py`` mirror them.
"""
from __future__ import annotations

import multiscale
from multiscale import _core
from multiscale._status import OUTCOME_NAMES, STATUS_MEANINGS, Outcome, Status
from multiscale._streams import Stream


def test_status_mirror_equals_registry():
    assert {s.name: int(s) for s in Status} == _core.status_codes()
    assert STATUS_MEANINGS == tuple(sorted(_core.status_codes(), key=_core.status_codes().get))


def test_outcome_mirror_equals_registry():
    assert {o.name: int(o) for o in Outcome} == _core.outcome_codes()
    assert OUTCOME_NAMES == tuple(sorted(_core.outcome_codes(), key=_core.outcome_codes().get))


def test_stream_mirror_equals_registry():
    assert {s.name: int(s) for s in Stream} == _core.streams()


def test_codes_are_their_index():
    # flag_meanings and OUTCOME_NAMES are indexed by code
    for enum in (Status, Outcome, Stream):
        assert [int(e) for e in enum] == list(range(len(enum))), enum


def test_stream_ids_do_not_change():
    # Part of the reproducibility contract: saved data record their stream (rng_stream) and the
    # same seed must give the same numbers. Append new streams; never renumber.
    assert _core.streams() == {"DYNAMICS": 0, "INITIAL": 1, "AUX": 2, "FROZEN": 3, "SURROGATE": 4}


def test_datasets_label_status_from_the_registry():
    ds = multiscale.simulate("fast_ou_linear", eps=0.1, t_end=0.01, dt=1e-3, n_paths=2, seed=1)
    assert ds["status"].attrs["flag_meanings"].split() == list(STATUS_MEANINGS)
    assert list(ds["status"].attrs["flag_values"]) == [int(s) for s in Status]
