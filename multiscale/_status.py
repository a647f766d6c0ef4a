"""Per-path result codes: the Python mirror of ``csrc/include/multiscale/status.h``.

The header is the registry; this module repeats it for code that runs without reading the
compiled module (dataset attributes, messages), and ``tests/test_codes.py`` checks that the two
agree (``_core.status_codes()``, ``_core.outcome_codes()``). Codes are stored in datasets as CF
``flag_values`` / ``flag_meanings``: never renumber, only append.
"""
from __future__ import annotations

from enum import IntEnum


class Status(IntEnum):
    """Per path of a simulation or a frozen-x average (``status`` arrays)."""

    OK = 0            #: the path ran to the end
    NONFINITE = 1     #: the state became NaN/inf; the path is frozen at its last finite state
    MAX_STEPS = 2     #: a stopping-time kernel hit its step budget before the event
    INTERRUPTED = 3   #: the run was stopped (Ctrl-C) before this path finished
    INVALID = 4       #: inputs for this path were rejected


class Outcome(IntEnum):
    """How a first-passage segment ended (``outcome`` arrays)."""

    LO = 0            #: the reaction coordinate reached lo (set A)
    HI = 1            #: it reached hi (set B)
    LEVEL = 2         #: it exceeded the stopping level (AMS branching point)
    MAX_STEPS = 3     #: the step budget ran out first (also: the run was interrupted)
    NONFINITE = 4     #: the state became NaN/inf; the last finite state is kept


#: CF ``flag_meanings`` order of status codes (index = code)
STATUS_MEANINGS: tuple[str, ...] = tuple(s.name for s in Status)
#: names of outcome codes (index = code)
OUTCOME_NAMES: tuple[str, ...] = tuple(o.name for o in Outcome)
