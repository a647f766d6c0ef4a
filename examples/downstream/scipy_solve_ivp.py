"""Integrate the drift of an exported surrogate with SciPy's ``solve_ivp``, through the C API
library via ctypes: no torch and no multiscale Python model are needed at run time, only
``libmultiscale_surrogate.so`` (found with ``multiscale.export.get_library()`` or given by
``--lib``).

    python examples/downstream/scipy_solve_ivp.py surrogate.mss [--x0 -2 -0.5 0.5 2] [--t 20]

Prints, for each initial state, the state the deterministic flow dx/dt = b(x) reaches (for
reference problem 1a's surrogate: the wells near +-sqrt(1.5) = +-1.2247).
"""
from __future__ import annotations

import argparse
import ctypes

import numpy as np
from scipy.integrate import solve_ivp


class CSurrogate:
    """Minimal ctypes wrapper of the C API (multiscale/surrogate/c_api.h)."""

    def __init__(self, path: str, lib: str) -> None:
        self.lib = ctypes.CDLL(lib)
        L = self.lib
        L.ms_surrogate_open.restype = ctypes.c_void_p
        L.ms_surrogate_open.argtypes = [ctypes.c_char_p]
        L.ms_surrogate_last_error.restype = ctypes.c_char_p
        L.ms_surrogate_dim.argtypes = [ctypes.c_void_p]
        L.ms_surrogate_close.argtypes = [ctypes.c_void_p]
        for name in ("drift", "diffusion", "noise"):
            f = getattr(L, f"ms_surrogate_{name}")
            f.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int, ctypes.c_void_p]
        self.handle = L.ms_surrogate_open(path.encode())
        if not self.handle:
            raise ValueError(L.ms_surrogate_last_error().decode())
        self.dim = L.ms_surrogate_dim(self.handle)

    def _call(self, name: str, x: np.ndarray, member: int, shape: tuple[int, ...]) -> np.ndarray:
        x = np.ascontiguousarray(np.atleast_2d(x), dtype=np.float64)
        out = np.empty((x.shape[0], *shape))
        rc = getattr(self.lib, f"ms_surrogate_{name}")(self.handle, x.ctypes.data, x.shape[0], member,
                                                      out.ctypes.data)
        if rc:
            raise ValueError(self.lib.ms_surrogate_last_error().decode())
        return out

    def drift(self, x: np.ndarray, member: int = -1) -> np.ndarray:
        return self._call("drift", x, member, (self.dim,))

    def diffusion(self, x: np.ndarray, member: int = -1) -> np.ndarray:
        return self._call("diffusion", x, member, (self.dim, self.dim))

    def close(self) -> None:
        if self.handle:
            self.lib.ms_surrogate_close(self.handle)
            self.handle = None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("surrogate")
    ap.add_argument("--x0", type=float, nargs="+", default=[-2.0, -0.5, 0.5, 2.0])
    ap.add_argument("--t", type=float, default=20.0)
    ap.add_argument("--lib", default=None, help="path of libmultiscale_surrogate.so")
    a = ap.parse_args()
    if a.lib is None:
        import multiscale.export as ex

        a.lib = ex.get_library()
    s = CSurrogate(a.surrogate, a.lib)
    try:
        for x0 in a.x0:
            y0 = np.full(s.dim, x0)
            sol = solve_ivp(lambda t, y: s.drift(y)[0], (0.0, a.t), y0, method="LSODA", rtol=1e-10, atol=1e-12)
            if not sol.success:
                raise RuntimeError(sol.message)
            print(f"x0 {x0:+.4f} -> x(t={a.t:g}) " + " ".join(f"{v:+.10f}" for v in sol.y[:, -1]))
    finally:
        s.close()


if __name__ == "__main__":
    main()
