"""The catalogue written in the model language.

Each entry is the language form of a compiled catalogue model (``csrc/include/multiscale/
models/catalog.h``), written so that it compiles to the same floating-point operations in the
same order: ``tests/test_user_models.py`` checks that every entry, compiled just in time, gives
bitwise the paths of its built-in version. These definitions serve the learning and validation
layers (differentiable torch evaluation, :class:`~multiscale.ModelFunctions`) and are the
starting point for a user's variant of a catalogue model (``ms.get_model(name).model``).

The compiled catalogue itself stays hand-written C++: it must work in an installed wheel
without a compiler, and its Lorenz-96 fast loop is written for vectorisation (no index
arithmetic in the interior of the ring). Products are kept in the order of the C++ (``c*y*y``,
not ``c*y^2``, which would round differently).
"""
from __future__ import annotations

from ._model import Model

_SQRT2 = "sqrt(2)"

SOURCES: dict[str, Model] = {m.name: m for m in (
    Model("fast_ou_linear", slow={"x": "x - x^3 + c*y"}, fast={"y": "-(y - x)"},
          slow_noise={"x": "sigma"}, fast_noise={"y": _SQRT2}, params={"c": 0.5, "sigma": 1.0},
          scaling="averaging", default_eps=0.01, fast_invariant_density="exp(-(y - x)^2/2)",
          description="problem 1a: averaged drift 1.5x - x^3"),
    Model("fast_ou_quadratic", slow={"x": "x - x^3 + c*y*y"}, fast={"y": "-(y - x)"},
          slow_noise={"x": "sigma"}, fast_noise={"y": _SQRT2}, params={"c": 0.5, "sigma": 1.0},
          scaling="averaging", default_eps=0.01, fast_invariant_density="exp(-(y - x)^2/2)",
          description="problem 1b: averaged drift x - x^3 + c (x^2 + 1)"),
    Model("tilted_double_well", slow={"x": "a0 - x + lam*y"}, fast={"y": "-(y^3 - y - lam*x)"},
          slow_noise={"x": _SQRT2}, fast_noise={"y": _SQRT2}, params={"a0": 0.1, "lam": 1.5},
          scaling="averaging", default_eps=0.03,
          fast_invariant_density="exp(-(y^4/4 - y^2/2 - lam*x*y))",
          description="problem 2: slow OU coupled to a tilted fast double well"),
    Model("periodic_potential_quadratic", slow={"x": "-x + 2*pi*A*(1/eps)*sin2pi(x*(1/eps))"},
          slow_noise={"x": "sqrt(2*sigma)"}, params={"A": 1.0, "sigma": 0.5}, scaling="none",
          default_eps=0.2, potential="x^2/2 + A*cos2pi(x/eps)",
          description="problem 3a: V = x^2/2 plus the fast periodic potential A cos(2 pi x/eps)"),
    Model("periodic_potential_quartic", slow={"x": "-(x^3 - x) + 2*pi*A*(1/eps)*sin2pi(x*(1/eps))"},
          slow_noise={"x": "sqrt(2*sigma)"}, params={"A": 1.0, "sigma": 0.5}, scaling="none",
          default_eps=0.2, potential="x^4/4 - x^2/2 + A*cos2pi(x/eps)",
          description="problem 3b: V = x^4/4 - x^2/2 plus the fast periodic potential"),
    Model("fast_ou_noise", slow={"x": "-x - x^3"}, slow_drift0={"x": "sqrt(1 + x^2)*y"}, fast={"y": "-y"},
          fast_noise={"y": _SQRT2}, scaling="homogenization", default_eps=0.05,
          fast_invariant_density="exp(-y^2/2)",
          description="problem 4: homogenization with fast OU noise"),
    Model("double_well", slow={"x": "x - x^3"}, slow_noise={"x": "sigma"}, params={"sigma": 0.4},
          scaling="none", potential="x^4/4 - x^2/2", description="problem 5: symmetric double well"),
    Model("ornstein_uhlenbeck", slow={"x": "-theta*x"}, slow_noise={"x": "sqrt(2*D)"},
          params={"theta": 1.0, "D": 1.0}, scaling="none", potential="theta*x^2/2",
          description="problem 6a: Ornstein-Uhlenbeck"),
    Model("lorenz96",
          slow={"X[k]": "-X[k-1]*(X[k-2] - X[k+1]) - X[k] + F - (h*c/b)*sum(Y[k*J + j], j, 0, J)"},
          fast={"Y[i]": "-c*b*Y[i+1]*(Y[i+2] - Y[i-1]) - c*Y[i] + (h*c/b)*X[i//J]"},
          slow_noise={"X": "sigma_x"}, fast_noise={"Y": "sigma_y"}, sizes={"X": "K", "Y": "K*J"},
          params={"K": 8, "J": 32, "h": 1.0, "b": 10.0, "c": 10.0, "F": 20.0, "sigma_x": 0.0, "sigma_y": 0.0},
          scaling="none", description="two-scale Lorenz-96 on one ring (problem 7)"),
)}
