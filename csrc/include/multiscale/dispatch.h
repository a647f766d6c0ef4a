// Model-id dispatch shared by the CPU and CUDA launchers: calls fn(model) with the catalogue
// model `id` built from its parameter vector. Returns false for an unknown id.
#pragma once
#include <stdexcept>
#include <type_traits>
#include <vector>
#include <utility>

#include "models/catalog.h"
#include "models/surrogate.h"
#include "run.h"

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

// A surrogate model bound to its arrays in the run's precision (host memory; the CUDA launcher
// copies them to the device). Throws std::invalid_argument when the arrays do not fit the
// description (the bindings check first).
template <class Real>
struct BoundSurrogate {
  std::vector<Real> params, tables;
  SurrogateModel<Real> model;
  explicit BoundSurrogate(const SurrogateArrays& a) {
    bool valid = false;
    model = SurrogateModel<Real>::make(a.spec, valid);
    const int64_t n_tab = model.n_grid * 4 * model.n_groups();
    if (!valid || static_cast<int64_t>(a.params.size()) != model.n_params ||
        static_cast<int64_t>(a.tables.size()) != n_tab)
      throw std::invalid_argument("surrogate arrays do not match its description");
    params.assign(a.params.begin(), a.params.end());
    tables.assign(a.tables.begin(), a.tables.end());
    model.bind(params.data(), tables.empty() ? nullptr : tables.data());
  }
};

// with_model, or the run's surrogate for id kSurrogateModel.
// A just-in-time module for a user model leaves the surrogate out (it would double its compile
// time); surrogates run in the package's own module.
template <class Real, class Fn>
bool with_any_model(int id, const double* params, double eps, const SurrogateArrays& surrogate, Fn&& fn) {
#ifndef MS_USER_MODEL_HEADER
  if (id == kSurrogateModel) {
    const BoundSurrogate<Real> b(surrogate);
    fn(b.model);
    return true;
  }
#else
  (void)surrogate;
#endif
  return with_model<Real>(id, params, eps, fn);
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
