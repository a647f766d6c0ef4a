"""ctypes access to the C API library (``libmultiscale_surrogate``), for checks from Python."""
from __future__ import annotations

import ctypes
import os

import numpy as np


class CSurrogate:
    """A surrogate file opened through the C API: the route C and Fortran programs take.

    Ring surrogates (a :class:`LocalEffectiveSDE`, ``kind == "ring"``): :meth:`drift` is the total
    drift ``R + U`` and :meth:`diffusion` the diagonal ``A = S^2`` as ``(n, K, K)`` matrices;
    :meth:`closure` gives ``U`` and the diagonal ``S`` as ``(n, K)`` arrays and :meth:`resolved`
    the resolved drift ``R``.

    Parameters
    ----------
    path : str or path-like
        A portable ``.mss`` file.
    library : str, optional
        Path of ``libmultiscale_surrogate.so`` (default: :func:`multiscale.export.get_library`).

    Raises
    ------
    ValueError
        With the library's message when the file is refused.
    """

    def __init__(self, path: str | os.PathLike, library: str | None = None) -> None:
        if library is None:
            from . import get_library

            library = get_library()
        L = ctypes.CDLL(library)
        L.ms_surrogate_open.restype = ctypes.c_void_p
        L.ms_surrogate_open.argtypes = [ctypes.c_char_p]
        L.ms_surrogate_last_error.restype = ctypes.c_char_p
        L.ms_surrogate_close.argtypes = [ctypes.c_void_p]
        for f in ("dim", "members"):
            getattr(L, f"ms_surrogate_{f}").argtypes = [ctypes.c_void_p]
        L.ms_surrogate_name.argtypes = [ctypes.c_void_p, ctypes.c_int]
        L.ms_surrogate_name.restype = ctypes.c_char_p
        for f in ("drift", "diffusion", "noise"):
            getattr(L, f"ms_surrogate_{f}").argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                         ctypes.c_int, ctypes.c_void_p]
        self._ring_api = hasattr(L, "ms_surrogate_ring_closure")  # libraries before format version 2 lack it
        if self._ring_api:
            for f in ("kind", "stencil", "has_resolved"):
                getattr(L, f"ms_surrogate_{f}").argtypes = [ctypes.c_void_p]
            L.ms_surrogate_ring_closure.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int,
                                                    ctypes.c_void_p, ctypes.c_void_p]
            L.ms_surrogate_ring_resolved.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64,
                                                     ctypes.c_void_p]
        self._L = L
        self._h = L.ms_surrogate_open(os.fsencode(path))
        if not self._h:
            raise ValueError(self.last_error())
        self.dim = L.ms_surrogate_dim(self._h)
        self.members = L.ms_surrogate_members(self._h)
        self.names = tuple(L.ms_surrogate_name(self._h, i).decode() for i in range(self.dim))
        #: ``"sde"`` or ``"ring"``; a ring's ``stencil`` half-width (-1 otherwise) and whether the
        #: file holds the resolved drift.
        self.kind = "ring" if self._ring_api and L.ms_surrogate_kind(self._h) == 1 else "sde"
        self.stencil = int(L.ms_surrogate_stencil(self._h)) if self._ring_api else -1
        self.has_resolved = bool(self._ring_api and L.ms_surrogate_has_resolved(self._h) == 1)

    def last_error(self) -> str:
        return self._L.ms_surrogate_last_error().decode()

    def _points(self, x) -> np.ndarray:
        if self._h is None:
            raise ValueError("the surrogate is closed")
        x = np.asarray(x, dtype=np.float64)
        if self.kind == "ring" and (x.ndim not in (1, 2) or x.shape[-1] != self.dim):
            raise ValueError(f"x has shape {x.shape}; expected (n, {self.dim}) ring states")
        if x.size % self.dim:
            raise ValueError(f"x has shape {x.shape}; expected (n, {self.dim})")
        return np.ascontiguousarray(x.reshape(-1, self.dim))

    def _call(self, name: str, x, member: int, shape: tuple[int, ...]) -> np.ndarray:
        x = self._points(x)
        out = np.empty((x.shape[0], *shape))
        rc = getattr(self._L, f"ms_surrogate_{name}")(self._h, x.ctypes.data, x.shape[0], int(member),
                                                      out.ctypes.data)
        if rc:
            raise ValueError(f"ms_surrogate_{name} returned {rc}: {self.last_error()}")
        return out

    def drift(self, x, member: int = -1) -> np.ndarray:
        """``(n, m)``; ``member=-1`` is the ensemble mean."""
        return self._call("drift", x, member, (self.dim,))

    def diffusion(self, x, member: int = -1) -> np.ndarray:
        """``(n, m, m)``."""
        return self._call("diffusion", x, member, (self.dim, self.dim))

    def noise(self, x, member: int = -1) -> np.ndarray:
        """``(n, m, m)`` Cholesky factor of the diffusion."""
        return self._call("noise", x, member, (self.dim, self.dim))

    def _require_ring(self, what: str) -> None:
        if self.kind != "ring":
            why = "the surrogate is not a ring" if self._ring_api else "the library predates ring surrogates"
            raise ValueError(f"{what}: {why}")

    def closure(self, x, member: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Ring surrogates: the closure ``U`` and the diagonal noise ``S``, each ``(n, K)``, at
        ``x (n, K)``. ``member=-1``: the mean ``U`` and ``S = sqrt(mean S^2)``."""
        self._require_ring("closure")
        x = self._points(x)
        u, s = np.empty_like(x), np.empty_like(x)
        rc = self._L.ms_surrogate_ring_closure(self._h, x.ctypes.data, x.shape[0], int(member), u.ctypes.data,
                                               s.ctypes.data)
        if rc:
            raise ValueError(f"ms_surrogate_ring_closure returned {rc}: {self.last_error()}")
        return u, s

    def resolved(self, x) -> np.ndarray:
        """Ring surrogates: the resolved drift ``R (n, K)`` from the file's program (zeros when the
        model has no resolved part)."""
        self._require_ring("resolved")
        x = self._points(x)
        r = np.empty_like(x)
        rc = self._L.ms_surrogate_ring_resolved(self._h, x.ctypes.data, x.shape[0], r.ctypes.data)
        if rc:
            raise ValueError(f"ms_surrogate_ring_resolved returned {rc}: {self.last_error()}")
        return r

    def close(self) -> None:
        if self._h is not None:
            self._L.ms_surrogate_close(self._h)
            self._h = None

    def __enter__(self) -> "CSurrogate":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:  # pragma: no cover - best effort
        try:
            self.close()
        except Exception:
            pass
