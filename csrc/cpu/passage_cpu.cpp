// OpenMP launcher of first-passage segments. Segments have random lengths, so paths are
// scheduled one at a time (dynamic) with scalar state; each path's noise is keyed by its own
// id, so the result does not depend on threads or scheduling.
#include "passage_cpu.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <vector>

#include "multiscale/dispatch.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/view.h"

namespace ms::cpu {

namespace {

template <bool ExactOU, class M>
bool run_all(const M& m, const PassageSpec& spec, const PassageBuffers& out) {
  using V = View<double, 1>;
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  const StepCoef<double> k = make_step_coef<double>(m, spec.dt, spec.eps);
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const int threads = spec.threads > 0 ? spec.threads : omp_get_max_threads();
  // Paths in chunks between polls of should_stop (Ctrl-C within about a second).
  const int64_t chunk = std::max<int64_t>(64 * threads, 256);
  bool stopped = false;
  for (int64_t c0 = 0; c0 < spec.n_paths && !stopped; c0 += chunk) {
    const int64_t c1 = std::min(spec.n_paths, c0 + chunk);
#pragma omp parallel num_threads(threads)
    {
      std::vector<double> buf(static_cast<size_t>(std::max(1, 3 * nx + 3 * ny + 2 * nx + 2 * ny + dim)));
      double* p = buf.data();
      auto take = [&](int len) { double* q = p; p += std::max(len, 0); return V{q}; };
      V xn = take(nx), yn = take(ny);
      const StepScratch<V> S{take(nx), take(nx), take(nx), take(ny), take(ny), take(dim)};
      PassageArgs a{spec.w.data(), spec.lo, spec.hi, 0.0, spec.max_steps, spec.bridge};
#pragma omp for schedule(dynamic, 1)
      for (int64_t i = c0; i < c1; ++i) {
        double* st = out.state + i * dim;
        a.level = out.level[i];
        int64_t steps = 0;
        double xmax = 0.0;
        out.outcome[i] = run_passage<ExactOU>(m, k, V{st}, V{st + nx}, xn, yn, S, key,
                                              out.path_ids[i], 0, a, steps, xmax);
        out.steps[i] = steps;
        out.xi_max[i] = xmax;
      }
    }
    if (c1 < spec.n_paths && spec.should_stop && spec.should_stop()) {
      stopped = true;
      for (int64_t i = c1; i < spec.n_paths; ++i) {
        out.outcome[i] = OUTCOME_MAX_STEPS;
        out.steps[i] = 0;
        out.xi_max[i] = -INFINITY;
      }
    }
  }
  return stopped;
}

}  // namespace

bool passage(const PassageSpec& spec, const PassageBuffers& out) {
  bool stopped = false;
  const bool known = with_model<double>(spec.model_id, spec.params.data(), spec.eps, [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    if constexpr (M::kOU) {
      stopped = spec.exact_ou ? run_all<true>(m, spec, out) : run_all<false>(m, spec, out);
    } else {
      stopped = run_all<false>(m, spec, out);
    }
  });
  if (!known) throw std::invalid_argument("unknown model id");
  return stopped;
}

}  // namespace ms::cpu
