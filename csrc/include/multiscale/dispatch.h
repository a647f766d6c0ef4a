// Model-id dispatch shared by the CPU and CUDA launchers: calls fn(model) with the catalogue
// model `id` built from its parameter vector. Returns false for an unknown id.
#pragma once
#include <type_traits>
#include <utility>

#include "models/catalog.h"

// A just-in-time build for a user model (multiscale/models/_jit.py) includes its generated
// header, which defines MS_USER_MODEL_LIST; the module then dispatches to that model only.
#ifdef MS_USER_MODEL_HEADER
#include MS_USER_MODEL_HEADER
#define MS_ACTIVE_MODEL_LIST MS_USER_MODEL_LIST
#else
#define MS_ACTIVE_MODEL_LIST MS_MODEL_LIST
#endif

namespace ms {

template <class Real, class Fn>
bool with_model(int id, const double* params, double eps, Fn&& fn) {
  switch (id) {
#define MS_DISPATCH_CASE(ID, T)                            \
  case ID:                                                 \
    fn(T<Real>::from_params(params, eps));                 \
    return true;
    MS_ACTIVE_MODEL_LIST(MS_DISPATCH_CASE)
#undef MS_DISPATCH_CASE
    default:
      return false;
  }
}

// Slow and fast dimensions of a catalogue model for given parameters.
inline std::pair<int, int> model_dims(int id, const double* params, double eps) {
  std::pair<int, int> d{-1, -1};
  with_model<double>(id, params, eps, [&](const auto& m) { d = {m.nx(), m.ny()}; });
  return d;
}

// Drift and noise coefficients of model `id` at n states (double, row-major x: n x nx,
// y: n x ny); f0 is zero unless the model has homogenization scaling. Host only: a reference
// for tests and for evaluating a model outside the integrators.
inline bool model_coefficients(int id, const double* params, double eps, long n, const double* x, const double* y,
                               double* f, double* f0, double* a, double* g, double* b) {
  return with_model<double>(id, params, eps, [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    const int nx = m.nx(), ny = m.ny();
    for (long i = 0; i < n; ++i) {
      const double* xi = x + i * nx;
      const double* yi = y + i * ny;
      m.slow_drift(xi, yi, f + i * nx);
      m.slow_noise(xi, yi, a + i * nx);
      if constexpr (M::kScaling == Scaling::kHomogenization) {
        m.slow_drift0(xi, yi, f0 + i * nx);
      } else {
        for (int k = 0; k < nx; ++k) f0[i * nx + k] = 0.0;
      }
      if (ny > 0) {
        m.fast_drift(xi, yi, g + i * ny);
        m.fast_noise(xi, yi, b + i * ny);
      }
    }
  });
}

}  // namespace ms
