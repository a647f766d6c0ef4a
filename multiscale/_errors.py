"""Exceptions and warnings raised by multiscale: one family, defined here.

Every exception class the package defines derives from :class:`MultiscaleError` and keeps the
built-in base that says what kind of failure it is (``ValueError`` for invalid input,
``RuntimeError`` for a run that could not complete), so ``except ValueError`` keeps working.
Invalid arguments to functions (a negative ``dt``, an unknown parameter) raise a plain
``ValueError`` naming the value (see :mod:`multiscale._checks`). Every warning the package issues
derives from :class:`MultiscaleWarning`. All are exported from the top-level package.
"""
from __future__ import annotations

from typing import Any


class MultiscaleError(Exception):
    """Base class of every exception multiscale raises on purpose."""


class MultiscaleWarning(UserWarning):
    """Base class of the warnings multiscale issues."""


# -- simulation and devices ---------------------------------------------------------------------

class SimulationError(MultiscaleError, RuntimeError):
    """Some paths of an ensemble did not finish (e.g. became non-finite).

    The complete result, including the per-path ``status``, is attached as ``dataset`` so
    that no data is lost when ``throw=True``.
    """

    def __init__(self, message: str, dataset: Any = None) -> None:
        super().__init__(message)
        self.dataset = dataset


class DeviceUnavailableError(MultiscaleError, RuntimeError):
    """The requested device (e.g. ``"cuda"``) is not available in this build or machine."""


# -- models -------------------------------------------------------------------------------------

class ModelLanguageError(MultiscaleError, ValueError):
    """An invalid model definition or expression.

    The message names the model and the field (e.g. ``slow drift of x``) and, for an expression,
    shows it with a caret under the offending token.

    Attributes
    ----------
    reason : str
        What is wrong, without the location.
    model, field, source : str or None
        Model name, field label and (for files) the file the definition came from.
    text : str or None
        The expression; ``start``/``end`` are the offending character range in it.
    """

    def __init__(self, reason: str, *, model: str | None = None, field: str | None = None,
                 text: str | None = None, start: int | None = None, end: int | None = None,
                 source: str | None = None) -> None:
        self.reason, self.model, self.field, self.source = reason, model, field, source
        self.text, self.start, self.end = text, start, end
        super().__init__(self._render())

    def _render(self) -> str:
        where = [w for w in (self.source, None if self.model is None else f"model {self.model!r}",
                             self.field) if w]
        msg = f"{', '.join(where)}: {self.reason}" if where else self.reason
        if self.text is not None and self.start is not None:
            msg += "\n" + _caret(self.text, self.start, self.end)
        return msg

    def with_source(self, source: str) -> ModelLanguageError:
        """A copy of this error that also names where the definition came from."""
        return ModelLanguageError(self.reason, model=self.model, field=self.field, text=self.text,
                                  start=self.start, end=self.end, source=source)

    def __reduce__(self):  # keyword-only __init__: pickle through the attributes
        return (_rebuild_error, (self.reason, self.model, self.field, self.text, self.start,
                                 self.end, self.source))


def _rebuild_error(reason, model, field, text, start, end, source) -> ModelLanguageError:
    return ModelLanguageError(reason, model=model, field=field, text=text, start=start, end=end,
                              source=source)


def _caret(text: str, start: int, end: int | None) -> str:
    """The expression (a window of it when long) and a caret line under [start, end)."""
    shown = "".join(c if c.isprintable() else " " for c in text)  # one char per char
    start = min(max(start, 0), len(shown))
    end = min(max(end if end is not None else start + 1, start + 1), max(len(shown), start + 1))
    width = 76
    lo, hi = 0, len(shown)
    if hi > width:
        lo = max(0, start - 30)
        hi = min(len(shown), lo + width)
        lo = max(0, hi - width)
    pre, post = ("..." if lo > 0 else ""), ("..." if hi < len(shown) else "")
    col = len(pre) + start - lo
    n = max(1, min(end, max(hi, start + 1)) - start)
    return f"    {pre}{shown[lo:hi]}{post}\n    {' ' * col}{'^' * n}"


class ModelCompileError(MultiscaleError, RuntimeError):
    """The generated code of a user model did not compile; the message holds the compiler's
    first errors."""


# -- learning, export and campaigns -------------------------------------------------------------

class LagWarning(MultiscaleWarning):
    """The transition lag looks too short (fast-scale variance in the increments) or too long."""


class StateRolesWarning(MultiscaleWarning):
    """Data that do not say which states are slow: the fit models the states it names."""


class SurrogateFormatError(MultiscaleError, ValueError):
    """A surrogate file is not a valid, unmodified file of a supported format version."""


class ExportFormatError(MultiscaleError, ValueError):
    """A portable surrogate file is malformed, truncated, corrupted or of another version."""


class CampaignSpecError(MultiscaleError, ValueError):
    """An invalid campaign spec; the message starts with the key path of the bad value."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"campaign spec: {key}: {message}")
        self.key = key


class CampaignError(MultiscaleError, RuntimeError):
    """A campaign cannot run or resume (changed spec, failed task, corrupt folder)."""
