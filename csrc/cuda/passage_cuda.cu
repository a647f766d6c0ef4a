// CUDA launcher of first-passage segments: one thread per path runs the header's passage_start
// and run_passage (passage_step and passage_decide, the calls the CPU lanes make), so a path
// draws the same noise and takes the same decisions on both. Kernels run a bounded
// number of steps per launch (a segment may be arbitrarily long); the host relaunches until every
// path has an outcome, polling should_stop between launches.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "multiscale/dispatch.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/integrators/euler_maruyama.h"
#include "multiscale/view.h"
#include "cuda_util.h"
#include "simulate_cuda.h"

namespace ms::cuda {

namespace {

// state: [dim][n]. outcome: -1 while running. steps, xi_max: per path, carried across launches.
template <bool ExactOU, bool Bridge, class M>
__global__ void passage_kernel(M m, StepCoef<double> k, PhiloxKey key, int64_t n, const double* w, double lo,
                               double hi, int64_t max_steps, const uint32_t* ids, const double* level,
                               double* state, double* scratch, int8_t* outcome, int64_t* steps, double* xi_max,
                               int64_t budget, bool first) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n || (!first && outcome[p] >= 0)) return;
  const int nx = m.nx(), ny = m.ny();
  const PassageArgs a{w, lo, hi, level[p], max_steps};
  const uint32_t path = ids[p];

  auto body = [&](auto x, auto y, auto xn, auto yn, const auto& S) {
    for (int i = 0; i < nx; ++i) x[i] = state[i * n + p];
    for (int j = 0; j < ny; ++j) y[j] = state[(nx + j) * n + p];
    double xi = coordinate(w, x, y, nx, ny);
    int r;
    int64_t nst;
    double xmax;
    if (first) {
      nst = 0;
      xmax = xi;
      r = passage_start(a, xi);
    } else {
      nst = steps[p];
      xmax = xi_max[p];
      r = -1;
    }
    if (r < 0) r = run_passage<ExactOU, Bridge>(m, k, x, y, xn, yn, S, key, path, a, budget, xi, nst, xmax);
    for (int i = 0; i < nx; ++i) state[i * n + p] = x[i];
    for (int j = 0; j < ny; ++j) state[(nx + j) * n + p] = y[j];
    outcome[p] = static_cast<int8_t>(r);
    steps[p] = nst;
    xi_max[p] = xmax;
  };

  with_path_views(m, n, p, scratch, body);
}

template <bool ExactOU, class M>
bool run_passage_cuda(const M& m, const PassageSpec& spec, const PassageBuffers& out, int device) {
  MS_CUDA_CHECK(cudaSetDevice(device));
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  const int64_t n = spec.n_paths;
  const StepCoef<double> k = make_step_coef<double>(m, spec.dt, spec.eps);
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const bool bridge = spec.bridge && model_noisy(m);
  std::vector<double> h_state(static_cast<size_t>(dim) * n);
  for (int64_t p = 0; p < n; ++p)
    for (int d = 0; d < dim; ++d) h_state[d * n + p] = out.state[p * dim + d];
  const bool dynamic = !(M::kNX > 0 && M::kNY >= 0);
  DeviceArray<double> d_state(h_state.size());
  DeviceArray<double> d_scratch(block_eval_v<M> ? static_cast<size_t>(block_row_len(m)) * n
                                                : (dynamic ? static_cast<size_t>(8) * dim * n : 0));
  DeviceModel<M> dm(m);
  DeviceArray<double> d_w(dim), d_level(n), d_xmax(n);
  DeviceArray<uint32_t> d_ids(n);
  DeviceArray<int8_t> d_out(n);
  DeviceArray<int64_t> d_steps(n);
  MS_CUDA_CHECK(cudaMemcpy(d_state.p, h_state.data(), h_state.size() * sizeof(double), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_w.p, spec.w.data(), dim * sizeof(double), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_level.p, out.level, n * sizeof(double), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_ids.p, out.path_ids, n * sizeof(uint32_t), cudaMemcpyHostToDevice));
  const int tpb = 128;
  const unsigned grid = static_cast<unsigned>((n + tpb - 1) / tpb);
  const int64_t budget = 4096;  // steps per launch: launches of well under a second
  std::vector<int8_t> h_out(n);
  bool stopped = false, first = true;
  for (;;) {
    if (bridge)
      passage_kernel<ExactOU, true><<<grid, tpb>>>(dm.m, k, key, n, d_w.p, spec.lo, spec.hi, spec.max_steps, d_ids.p,
                                                   d_level.p, d_state.p, d_scratch.p, d_out.p, d_steps.p, d_xmax.p,
                                                   budget, first);
    else
      passage_kernel<ExactOU, false><<<grid, tpb>>>(dm.m, k, key, n, d_w.p, spec.lo, spec.hi, spec.max_steps,
                                                    d_ids.p, d_level.p, d_state.p, d_scratch.p, d_out.p, d_steps.p,
                                                    d_xmax.p, budget, first);
    MS_CUDA_CHECK(cudaGetLastError());
    MS_CUDA_CHECK(cudaDeviceSynchronize());
    first = false;
    MS_CUDA_CHECK(cudaMemcpy(h_out.data(), d_out.p, n, cudaMemcpyDeviceToHost));
    if (std::all_of(h_out.begin(), h_out.end(), [](int8_t o) { return o >= 0; })) break;
    if (spec.should_stop && spec.should_stop()) {
      stopped = true;
      break;
    }
  }
  MS_CUDA_CHECK(cudaMemcpy(h_state.data(), d_state.p, h_state.size() * sizeof(double), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(out.steps, d_steps.p, n * sizeof(int64_t), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(out.xi_max, d_xmax.p, n * sizeof(double), cudaMemcpyDeviceToHost));
  for (int64_t p = 0; p < n; ++p) {
    for (int d = 0; d < dim; ++d) out.state[p * dim + d] = h_state[d * n + p];
    out.outcome[p] = h_out[p] >= 0 ? h_out[p] : static_cast<int8_t>(OUTCOME_MAX_STEPS);  // interrupted
  }
  return stopped;
}

}  // namespace

bool passage(const PassageSpec& spec, const PassageBuffers& out, int device) {
  bool stopped = false;
  const bool known = with_any_model<double>(spec.model_id, spec.params.data(), spec.eps, spec.surrogate,
                                            [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    if constexpr (M::kOU) {
      stopped = spec.exact_ou ? run_passage_cuda<true>(m, spec, out, device)
                              : run_passage_cuda<false>(m, spec, out, device);
    } else {
      stopped = run_passage_cuda<false>(m, spec, out, device);
    }
  });
  if (!known) throw std::invalid_argument("unknown model id");
  return stopped;
}

}  // namespace ms::cuda
