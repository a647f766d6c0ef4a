"""Philox stream ids: the Python mirror of ``csrc/include/multiscale/rng/streams.h``.

Every random number is addressed by (seed, stream, path, step); each purpose draws from its own
stream. The header is the registry (with what each stream is for); ``tests/test_codes.py``
checks that this mirror equals ``_core.streams()``. Ids are part of the reproducibility
contract (datasets record theirs as ``rng_stream``): never renumber, only append.
"""
from __future__ import annotations

from enum import IntEnum


class Stream(IntEnum):
    DYNAMICS = 0   #: Brownian increments of the full SDE (simulate, first passage)
    INITIAL = 1    #: random initial conditions (the averaging replicas' start perturbation)
    AUX = 2        #: estimators' own draws (Brownian-bridge crossing uniforms)
    FROZEN = 3     #: the fast process with x frozen (averaging kernel)
    SURROGATE = 4  #: noise of the learned effective SDE
