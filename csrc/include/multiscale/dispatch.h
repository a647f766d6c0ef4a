// Model-id dispatch shared by the CPU and CUDA launchers: calls fn(model) with the catalogue
// model `id` built from its parameter vector. Returns false for an unknown id.
#pragma once
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

}  // namespace ms
