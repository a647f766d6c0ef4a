"""The models' shared vocabulary: how a model scales with ``eps`` (:class:`Scaling`), its runtime
parameters (:class:`Param`) and the description every model answers to (:class:`ModelInfo`).

A leaf module: the catalogue (:mod:`._catalog`), the model language (:mod:`._model`) and the
user-model compiler (:mod:`._user`) all build on it, so imports within ``multiscale.models``
run one way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable, Mapping

import numpy as np


class Scaling(Enum):
    """How the fast variables are scaled by ``eps``."""

    AVERAGING = "averaging"  #: dY = g/eps dt + b/sqrt(eps) dV
    HOMOGENIZATION = "homogenization"  #: dX = (f0/eps + f1) dt + ..., dY = g/eps^2 dt + b/eps dV
    NONE = "none"  #: single-scale SDE, or eps enters the model itself (hidden fast scale)


@dataclass(frozen=True)
class Param:
    """A runtime model parameter."""

    name: str
    default: float
    description: str
    #: constraint check returning an error fragment, or None when the value is valid
    check: Callable[[float], str | None] | None = None



@dataclass(frozen=True)
class ModelInfo:
    """Description of a catalogue model.

    Attributes
    ----------
    name : str
        Catalogue name used by :func:`multiscale.simulate` and the CLI.
    id : int
        Index of the compiled model.
    description : str
        One-line description.
    equations : str
        The SDE in Itô form.
    scaling : Scaling
        How ``eps`` scales the fast dynamics.
    params : tuple of Param
        Runtime parameters, in compiled order.
    uses_eps : bool
        Whether ``eps`` enters the dynamics.
    default_eps : float or None
        The scale separation used when none is given.
    reference : str
        Where the model's equations and exact answers are documented: a section of
        ``docs/reference_problems.md`` (``path#anchor``), a page of the source distribution and
        the repository (the installed package does not include ``docs/``).
    exact_ou : bool
        Whether the fast drift is linear, ``-theta (y - mu(x))``, so the exact
        Ornstein-Uhlenbeck fast step applies.
    """

    name: str
    id: int
    description: str
    equations: str
    scaling: Scaling
    params: tuple[Param, ...]
    uses_eps: bool
    default_eps: float | None
    reference: str
    exact_ou: bool
    _dims: Callable[[Mapping[str, float]], tuple[int, int]]
    _names: Callable[[Mapping[str, float]], tuple[list[str], list[str]]]
    _initial: Callable[[Mapping[str, float]], tuple[np.ndarray, np.ndarray]]
    aliases: tuple[str, ...] = field(default=())
    #: the compiled module holding this model (None: the built-in ``multiscale._core``)
    core: Any = field(default=None, compare=False, repr=False)
    #: the user model's definition (None for catalogue entries: see :attr:`model`)
    source: Any = field(default=None, compare=False, repr=False)
    #: catalogue entries: returns the entry's language form (set by the catalogue; see :attr:`model`)
    _language_form: Callable[[], Any] | None = field(default=None, compare=False, repr=False)

    @property
    def model(self) -> Any:
        """The model written in the model language (:class:`~multiscale.Model`): the user's
        definition, or the catalogue entry's language form, which compiles to bitwise the same
        paths. Use it for torch evaluation (``.torch_functions(...)``) or as a template for a variant."""
        if self.source is not None:
            return self.source
        if self._language_form is None:
            raise AttributeError(f"model {self.name!r} has no definition in the model language")
        return self._language_form()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def defaults(self) -> dict[str, float]:
        return {p.name: p.default for p in self.params}

    def resolve_params(self, params: Mapping[str, float] | None) -> dict[str, float]:
        """Defaults updated with ``params``; raises ``ValueError`` naming any bad entry."""
        out = self.defaults
        for key, value in (params or {}).items():
            if key not in out:
                raise ValueError(
                    f"unknown parameter {key!r} for model {self.name!r}; "
                    f"its parameters are {', '.join(self.param_names) or '(none)'}"
                )
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key}={value!r} of model {self.name!r} is not a number") from None
            out[key] = v
        for p in self.params:
            v = out[p.name]
            if not math.isfinite(v):
                raise ValueError(f"parameter {p.name}={v} of model {self.name!r} must be finite")
            if p.check is not None and (msg := p.check(v)) is not None:
                raise ValueError(f"parameter {p.name}={v:g} of model {self.name!r} {msg}")
        return out

    def dims(self, params: Mapping[str, float] | None = None) -> tuple[int, int]:
        """(slow dimension m, fast dimension n) for the given parameters."""
        return self._dims(self.resolve_params(params))

    def state_names(self, params: Mapping[str, float] | None = None) -> tuple[list[str], list[str]]:
        """Names of the slow and fast state components."""
        return self._names(self.resolve_params(params))

    def default_initial(self, params: Mapping[str, float] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Default initial slow and fast state, shapes (m,) and (n,)."""
        return self._initial(self.resolve_params(params))

    def coefficients(self, x: Any, y: Any = None, params: Mapping[str, float] | None = None,
                     eps: float | None = None) -> dict[str, np.ndarray]:
        """The compiled model's coefficients at a batch of states (double precision).

        Parameters
        ----------
        x : array_like, shape (B, m) or (m,)
            Slow states.
        y : array_like, shape (B, n) or (n,), optional
            Fast states (omit for models without fast variables).
        params : dict, optional
            Parameter values (defaults otherwise).
        eps : float, optional
            Scale separation, for models whose coefficients name it (default: ``default_eps``).

        Returns
        -------
        dict of str to ndarray
            ``f`` (B, m) slow drift, ``f0`` (B, m) the 1/eps part of a homogenization drift
            (zeros otherwise), ``a`` (B, m) slow noise, ``g`` (B, n) fast drift and ``b`` (B, n)
            fast noise, unscaled: the 1/eps factors of the scaling are not applied.
        """
        from .. import _core

        p = self.resolve_params(params)
        m, n = self._dims(p)
        x = np.asarray(x, dtype=float)
        xb = np.ascontiguousarray(x.reshape(-1, m) if x.ndim <= 1 else x)
        if xb.ndim != 2 or xb.shape[1] != m:
            raise ValueError(f"x has shape {x.shape}; model {self.name!r} has {m} slow variables")
        if y is None and n > 0:
            raise ValueError(f"model {self.name!r} has {n} fast variables: give y")
        yb = np.zeros((xb.shape[0], 0)) if y is None else np.asarray(y, dtype=float)
        yb = np.ascontiguousarray(yb.reshape(-1, n) if yb.ndim <= 1 else yb)
        if yb.shape != (xb.shape[0], n):
            raise ValueError(f"y has shape {np.shape(y)}; expected ({xb.shape[0]}, {n})")
        e = float(self.default_eps if eps is None else eps) if self.uses_eps else 1.0
        return dict((self.core or _core).model_coefficients(
            model_id=self.id, params=np.array(list(p.values()), dtype=float), eps=e, x=xb, y=yb))

    def summary(self) -> str:
        """Multi-line human-readable description (used by ``multiscale models``)."""
        m, n = self.dims()
        dims = f"slow {m}, fast {n}" if self.name != "lorenz96" else "slow K, fast J*K"
        eps = f"eps default {self.default_eps:g}" if self.uses_eps else "eps not used"
        lines = [f"{self.name}  [{dims}; scaling {self.scaling.value}; {eps}]",
                 f"    {self.description}",
                 f"    {self.equations}"]
        for p in self.params:
            lines.append(f"    {p.name:<8} = {p.default:<8g} {p.description}")
        lines.append(f"    exact answers: {self.reference}")
        return "\n".join(lines)
