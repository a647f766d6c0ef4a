// CUDA launcher: one thread per path, state in registers for fixed-size models and in a
// [component][path] global array (coalesced) for models whose size is a runtime parameter.
// The step itself is the same header-only em_step the CPU launcher uses.
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>
#include <vector>

#include "multiscale/dispatch.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/estimators/frozen_average.h"
#include "multiscale/estimators/window_stats.h"
#include "multiscale/integrators/euler_maruyama.h"
#include "multiscale/status.h"
#include "multiscale/view.h"
#include "cuda_util.h"
#include "simulate_cuda.h"

namespace ms::cuda {

namespace {

struct KernelObs {
  const int* vars;
  const double* shift;
  const double* lo;
  const double* hi;
  int nobs, bins;
};

// state: [dim][n] (component-major). wsum: [nobs][n]. hist: [nobs][bins+2] (this window).
template <bool ExactOU, class M, class Real>
__global__ void advance_kernel(M m, StepCoef<Real> k, PhiloxKey key, int64_t n, uint64_t path_offset,
                               uint64_t step_offset, int64_t s0, int64_t s1, Real* state, Real* scratch,
                               int8_t* status, int64_t* fail_step, KernelObs obs, bool accumulate, double* wsum1,
                               double* wsum2, int64_t* wcount, unsigned long long* hist, Real* save_out) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  int8_t st = status[p];
  int64_t fs = fail_step[p];
  const uint32_t path = static_cast<uint32_t>(path_offset + p);

  auto body = [&](auto x, auto y, auto xn, auto yn, const auto& S) {
    for (int i = 0; i < nx; ++i) x[i] = state[i * n + p];
    for (int j = 0; j < ny; ++j) y[j] = state[(nx + j) * n + p];
    double a1[8], a2[8];  // observables per path (bindings cap n_obs at 8)
    for (int q = 0; q < obs.nobs; ++q) {
      a1[q] = accumulate ? wsum1[q * n + p] : 0.0;
      a2[q] = accumulate ? wsum2[q * n + p] : 0.0;
    }
    int64_t live_states = (accumulate && obs.nobs > 0) ? wcount[p] : 0;
    for (int64_t s = s0; s < s1 && st == STATUS_OK; ++s) {
      if constexpr (block_eval_v<M>) block_coefficients_one(m, path, x, S);
      const bool ok = em_step<ExactOU>(m, k, x, y, xn, yn, S, key, path,
                                       step_offset + static_cast<uint64_t>(s));
      if (!ok) {
        st = STATUS_NONFINITE;
        fs = s;
        break;
      }
      for (int i = 0; i < nx; ++i) x[i] = xn[i];
      for (int j = 0; j < ny; ++j) y[j] = yn[j];
      if (accumulate) {
        ++live_states;
        for (int q = 0; q < obs.nobs; ++q) {
          const int v = obs.vars[q];
          const double val = static_cast<double>(v < nx ? x[v] : y[v - nx]);
          const double d = val - obs.shift[q];
          a1[q] += d;
          a2[q] += d * d;
          if (obs.bins > 0) {
            int idx;
            if (val < obs.lo[q]) idx = 0;
            else if (val >= obs.hi[q]) idx = obs.bins + 1;
            else idx = 1 + min(static_cast<int>((val - obs.lo[q]) * (obs.bins / (obs.hi[q] - obs.lo[q]))),
                               obs.bins - 1);
            atomicAdd(hist + q * (obs.bins + 2) + idx, 1ull);
          }
        }
      }
    }
    for (int i = 0; i < nx; ++i) state[i * n + p] = x[i];
    for (int j = 0; j < ny; ++j) state[(nx + j) * n + p] = y[j];
    if (accumulate) {
      for (int q = 0; q < obs.nobs; ++q) {
        wsum1[q * n + p] = a1[q];
        wsum2[q * n + p] = a2[q];
      }
      if (obs.nobs > 0) wcount[p] = live_states;
    }
    if (save_out != nullptr) {
      const Real nan = std::numeric_limits<Real>::quiet_NaN();
      for (int i = 0; i < nx; ++i) save_out[p * dim + i] = st == STATUS_OK ? x[i] : nan;
      for (int j = 0; j < ny; ++j) save_out[p * dim + nx + j] = st == STATUS_OK ? y[j] : nan;
    }
  };

  with_path_views(m, n, p, scratch, body);
  status[p] = st;
  fail_step[p] = fs;
}

template <class M, class Real>
RunResult run(const M& m, const RunSpec& spec, const RunBuffers<Real>& out, int device,
              double* kernel_seconds) {
  MS_CUDA_CHECK(cudaSetDevice(device));
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  const int64_t n = spec.n_paths;
  const ObservableSpec& obs = spec.obs;
  const int nobs = obs.n_obs(), nwin = obs.n_windows();
  const int hist_len = obs.bins > 0 ? nobs * (obs.bins + 2) : 0;
  const int nsave = static_cast<int>(spec.save_steps.size());
  StepCoef<Real> k = make_step_coef<Real>(m, spec.dt, spec.eps);
  k.substeps = spec.noise_substeps;
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);

  // Host state is [n][dim]; the device keeps [dim][n].
  std::vector<Real> h_state(static_cast<size_t>(dim) * n);
  for (int64_t p = 0; p < n; ++p)
    for (int d = 0; d < dim; ++d) h_state[d * n + p] = out.state[p * dim + d];
  std::vector<int8_t> h_status(n, STATUS_OK);
  std::vector<int64_t> h_fail(n, -1);

  DeviceArray<Real> d_state(h_state.size());
  const bool dynamic = !(M::kNX > 0 && M::kNY >= 0);
  DeviceArray<Real> d_scratch(block_eval_v<M> ? static_cast<size_t>(block_row_len(m)) * n
                                              : (dynamic ? static_cast<size_t>(10) * dim * n : 0));
  DeviceModel<M> dm(m);
  DeviceArray<int8_t> d_status(n);
  DeviceArray<int64_t> d_fail(n);
  DeviceArray<double> d_w1(static_cast<size_t>(nobs) * n), d_w2(static_cast<size_t>(nobs) * n);
  DeviceArray<int64_t> d_wc(nobs > 0 ? n : 0);
  DeviceArray<unsigned long long> d_hist(hist_len);
  DeviceArray<Real> d_save(out.traj ? static_cast<size_t>(dim) * n : 0);
  DeviceArray<int> d_vars(nobs);
  DeviceArray<double> d_shift(nobs), d_lo(nobs), d_hi(nobs);
  MS_CUDA_CHECK(cudaMemcpy(d_state.p, h_state.data(), h_state.size() * sizeof(Real), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_status.p, h_status.data(), n * sizeof(int8_t), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_fail.p, h_fail.data(), n * sizeof(int64_t), cudaMemcpyHostToDevice));
  if (nobs) {
    MS_CUDA_CHECK(cudaMemcpy(d_vars.p, obs.vars.data(), nobs * sizeof(int), cudaMemcpyHostToDevice));
    MS_CUDA_CHECK(cudaMemcpy(d_shift.p, obs.shift.data(), nobs * sizeof(double), cudaMemcpyHostToDevice));
    MS_CUDA_CHECK(cudaMemset(d_w1.p, 0, d_w1.n * sizeof(double)));
    MS_CUDA_CHECK(cudaMemset(d_w2.p, 0, d_w2.n * sizeof(double)));
    MS_CUDA_CHECK(cudaMemset(d_wc.p, 0, d_wc.n * sizeof(int64_t)));
    if (obs.bins > 0) {
      MS_CUDA_CHECK(cudaMemcpy(d_lo.p, obs.lo.data(), nobs * sizeof(double), cudaMemcpyHostToDevice));
      MS_CUDA_CHECK(cudaMemcpy(d_hi.p, obs.hi.data(), nobs * sizeof(double), cudaMemcpyHostToDevice));
      MS_CUDA_CHECK(cudaMemset(d_hist.p, 0, hist_len * sizeof(unsigned long long)));
    }
  }
  const KernelObs kobs{d_vars.p, d_shift.p, d_lo.p, d_hi.p, nobs, obs.bins};

  int save_idx = 0;
  if (out.traj != nullptr && nsave > 0 && spec.save_steps[0] == 0) {
    for (int64_t p = 0; p < n; ++p)
      std::copy(out.state + p * dim, out.state + (p + 1) * dim, out.traj + static_cast<size_t>(p) * nsave * dim);
    save_idx = 1;
  }

  // A GPU sustains ~1e10 simple path-steps/s: poll about every 2^30 component-steps.
  const std::vector<int64_t> edges = chunk_edges(spec, static_cast<double>(n) * std::max(dim, 1), 1073741824.0, true);
  const int threads_per_block = 128;
  const unsigned grid = static_cast<unsigned>((n + threads_per_block - 1) / threads_per_block);
  cudaEvent_t e0, e1;
  MS_CUDA_CHECK(cudaEventCreate(&e0));
  MS_CUDA_CHECK(cudaEventCreate(&e1));
  float total_ms = 0.f;
  RunResult result;
  int win = 0;
  std::vector<double> h_w1, h_w2;
  std::vector<int64_t> h_wc;
  std::vector<unsigned long long> h_hist(hist_len);
  std::vector<Real> h_save;
  for (size_t c = 0; c + 1 < edges.size(); ++c) {
    const int64_t s0 = edges[c], s1 = edges[c + 1];
    while (win < nwin && obs.window_edges[win + 1] <= s0) ++win;
    const bool accumulate = win < nwin && obs.window_edges[win] <= s0 && s1 <= obs.window_edges[win + 1];
    const bool do_save = out.traj != nullptr && save_idx < nsave && spec.save_steps[save_idx] == s1;
    MS_CUDA_CHECK(cudaEventRecord(e0));
    if (spec.exact_ou) {
      advance_kernel<true><<<grid, threads_per_block>>>(dm.m, k, key, n, spec.path_offset, spec.step_offset, s0, s1, d_state.p,
          d_scratch.p, d_status.p, d_fail.p, kobs, accumulate, d_w1.p, d_w2.p, d_wc.p, d_hist.p, do_save ? d_save.p : nullptr);
    } else {
      advance_kernel<false><<<grid, threads_per_block>>>(dm.m, k, key, n, spec.path_offset, spec.step_offset, s0, s1, d_state.p,
          d_scratch.p, d_status.p, d_fail.p, kobs, accumulate, d_w1.p, d_w2.p, d_wc.p, d_hist.p, do_save ? d_save.p : nullptr);
    }
    MS_CUDA_CHECK(cudaGetLastError());
    MS_CUDA_CHECK(cudaEventRecord(e1));
    MS_CUDA_CHECK(cudaEventSynchronize(e1));
    float ms = 0.f;
    MS_CUDA_CHECK(cudaEventElapsedTime(&ms, e0, e1));
    total_ms += ms;
    if (do_save) {
      h_save.resize(static_cast<size_t>(dim) * n);
      MS_CUDA_CHECK(cudaMemcpy(h_save.data(), d_save.p, h_save.size() * sizeof(Real), cudaMemcpyDeviceToHost));
      for (int64_t p = 0; p < n; ++p)
        std::copy(h_save.begin() + p * dim, h_save.begin() + (p + 1) * dim,
                  out.traj + (static_cast<size_t>(p) * nsave + save_idx) * dim);
      ++save_idx;
    }
    if (accumulate && s1 == obs.window_edges[win + 1]) {
      h_w1.resize(d_w1.n);
      h_w2.resize(d_w2.n);
      MS_CUDA_CHECK(cudaMemcpy(h_w1.data(), d_w1.p, d_w1.n * sizeof(double), cudaMemcpyDeviceToHost));
      MS_CUDA_CHECK(cudaMemcpy(h_w2.data(), d_w2.p, d_w2.n * sizeof(double), cudaMemcpyDeviceToHost));
      h_wc.resize(d_wc.n);
      MS_CUDA_CHECK(cudaMemcpy(h_wc.data(), d_wc.p, d_wc.n * sizeof(int64_t), cudaMemcpyDeviceToHost));
      finish_window(obs, win, n, h_wc.data(), h_w1.data(), h_w2.data(), out, spec.threads > 0 ? spec.threads : 1);
      MS_CUDA_CHECK(cudaMemset(d_w1.p, 0, d_w1.n * sizeof(double)));
      MS_CUDA_CHECK(cudaMemset(d_w2.p, 0, d_w2.n * sizeof(double)));
      MS_CUDA_CHECK(cudaMemset(d_wc.p, 0, d_wc.n * sizeof(int64_t)));
      if (hist_len > 0) {
        MS_CUDA_CHECK(cudaMemcpy(h_hist.data(), d_hist.p, hist_len * sizeof(unsigned long long), cudaMemcpyDeviceToHost));
        for (int i = 0; i < hist_len; ++i) out.hist[static_cast<size_t>(win) * hist_len + i] = static_cast<int64_t>(h_hist[i]);
        MS_CUDA_CHECK(cudaMemset(d_hist.p, 0, hist_len * sizeof(unsigned long long)));
      }
    }
    if (s1 < spec.n_steps && spec.should_stop && spec.should_stop()) {
      result.interrupted = true;
      break;
    }
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  if (kernel_seconds) *kernel_seconds = total_ms * 1e-3;

  MS_CUDA_CHECK(cudaMemcpy(h_state.data(), d_state.p, h_state.size() * sizeof(Real), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(h_status.data(), d_status.p, n * sizeof(int8_t), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(h_fail.data(), d_fail.p, n * sizeof(int64_t), cudaMemcpyDeviceToHost));
  for (int64_t p = 0; p < n; ++p) {
    for (int d = 0; d < dim; ++d) out.state[p * dim + d] = h_state[d * n + p];
    out.status[p] = (result.interrupted && h_status[p] == STATUS_OK) ? static_cast<int8_t>(STATUS_INTERRUPTED) : h_status[p];
    out.fail_step[p] = h_fail[p];
  }
  return result;
}


// Frozen-x averaging: one thread per (point, replica) path. State, accumulators and scratch
// live in per-path rows of global memory ([path][...], stride 1), the layout the host uses.
template <bool ExactOU, class M, class Real>
__global__ void frozen_kernel(M m, FrozenCoef<Real> k, FrozenLayout L, PhiloxKey key, int64_t n,
                              int64_t replicas, const double* x_points, const uint8_t* active,
                              int64_t s0, int64_t s1, int64_t burn_steps, int64_t burn_total,
                              int64_t done0, int64_t batch_len, Real* ystate, double* acc,
                              int8_t* status, int64_t* fail_step, Real* scratch, int scratch_len) {
  const int64_t p = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (p >= n) return;
  const int64_t pt = p / replicas;
  if (!active[pt] || status[p] != STATUS_OK) return;
  using V = View<Real, 0>;
  using A = View<double, 0>;
  const int nx = m.nx(), ny = m.ny(), ss = L.state_size();
  (void)key;
  Real* q = scratch + p * scratch_len;
  const V x{q, 1};
  for (int i = 0; i < nx; ++i) x[i] = Real(x_points[pt * nx + i]);
  Real* w = q + nx;
  const FrozenScratch<V> sc{V{w, 1}, V{w + nx, 1}, V{w + nx + ny, 1}, V{w + nx + 2 * ny, 1},
                            V{w + nx + 3 * ny, 1}, V{w + nx + 4 * ny, 1}, V{w + 2 * nx + 4 * ny, 1}};
  const V ys{ystate + p * ss, 1};
  const A a{acc + p * L.size, 1};
  const bool burning = s0 < burn_steps;
  Real zc = Real(0);
  for (int64_t s = s0; s < s1; ++s) {
    if (!burning && s == burn_steps && done0 == 0) frozen_block_start(m, k, L, x, ys, sc, a);
    const int64_t rng_step = burning ? s : burn_total + done0 + (s - burn_steps);
    if ((rng_step & 1) == 0 || s == s0)
      frozen_normals<true, Real>(key, static_cast<uint32_t>(p), static_cast<uint64_t>(rng_step), ny, sc.z, zc);
    else
      frozen_normals<false, Real>(key, static_cast<uint32_t>(p), static_cast<uint64_t>(rng_step), ny, sc.z, zc);
    bool ok;
    if (burning) {
      ok = L.corrector ? frozen_step<ExactOU, false, true>(m, k, L, x, ys, sc, a, true)
                       : frozen_step<ExactOU, false, false>(m, k, L, x, ys, sc, a, true);
    } else {
      ok = L.corrector ? frozen_step<ExactOU, true, true>(m, k, L, x, ys, sc, a, true)
                       : frozen_step<ExactOU, true, false>(m, k, L, x, ys, sc, a, true);
    }
    if (!ok) {
      status[p] = STATUS_NONFINITE;
      fail_step[p] = rng_step;
      return;
    }
    if (!burning && ((done0 + (s - burn_steps) + 1) % batch_len) == 0) {
      frozen_batch_close(m, L, batch_len, (done0 + (s - burn_steps) + 1) / batch_len - 1, a);
      frozen_block_start(m, k, L, x, ys, sc, a);
    }
  }
}

template <class M, class Real>
void run_frozen(const M& m, const FrozenSpec& spec, const FrozenBuffers<Real>& out, int device) {
  MS_CUDA_CHECK(cudaSetDevice(device));
  const int nx = m.nx(), ny = m.ny();
  const FrozenLayout L = FrozenLayout::make(nx, ny, M::kScaling == Scaling::kHomogenization, spec.corrector);
  const FrozenCoef<Real> k = make_frozen_coef<Real>(m, spec.dtau, spec.fd_step);
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const int64_t n = spec.n_points * spec.replicas;
  const int ss = L.state_size();
  const int64_t done0 = frozen_done0(spec, out);
  if (done0 < 0) return;
  const int scratch_len = 4 * nx + 4 * ny;
  DeviceArray<Real> d_y(static_cast<size_t>(n) * ss), d_scr(static_cast<size_t>(n) * scratch_len);
  DeviceArray<double> d_acc(static_cast<size_t>(n) * L.size), d_x(spec.x_points.size());
  DeviceArray<uint8_t> d_act(spec.active.size());
  DeviceArray<int8_t> d_st(n);
  DeviceArray<int64_t> d_fs(n);
  MS_CUDA_CHECK(cudaMemcpy(d_y.p, out.ystate, d_y.n * sizeof(Real), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_acc.p, out.acc, d_acc.n * sizeof(double), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_x.p, spec.x_points.data(), d_x.n * sizeof(double), cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_act.p, spec.active.data(), d_act.n, cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_st.p, out.status, n, cudaMemcpyHostToDevice));
  MS_CUDA_CHECK(cudaMemcpy(d_fs.p, out.fail_step, n * sizeof(int64_t), cudaMemcpyHostToDevice));
  const int64_t total = spec.burn_steps + spec.steps;
  const std::vector<int64_t> edges = frozen_chunk_edges(
      spec, static_cast<double>(n) * std::max(ss, 1) * (1 + 2 * nx), 1073741824.0);
  const int tpb = 128;
  const unsigned grid = static_cast<unsigned>((n + tpb - 1) / tpb);
  bool stopped = false;
  for (size_t c = 0; c + 1 < edges.size(); ++c) {
    if (spec.exact_ou)
      frozen_kernel<true><<<grid, tpb>>>(m, k, L, key, n, spec.replicas, d_x.p, d_act.p, edges[c], edges[c + 1],
          spec.burn_steps, spec.burn_total, done0, spec.batch_len, d_y.p, d_acc.p, d_st.p, d_fs.p, d_scr.p, scratch_len);
    else
      frozen_kernel<false><<<grid, tpb>>>(m, k, L, key, n, spec.replicas, d_x.p, d_act.p, edges[c], edges[c + 1],
          spec.burn_steps, spec.burn_total, done0, spec.batch_len, d_y.p, d_acc.p, d_st.p, d_fs.p, d_scr.p, scratch_len);
    MS_CUDA_CHECK(cudaGetLastError());
    MS_CUDA_CHECK(cudaDeviceSynchronize());
    if (edges[c + 1] < total && spec.should_stop && spec.should_stop()) {
      stopped = true;
      break;
    }
  }
  MS_CUDA_CHECK(cudaMemcpy(out.ystate, d_y.p, d_y.n * sizeof(Real), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(out.acc, d_acc.p, d_acc.n * sizeof(double), cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(out.status, d_st.p, n, cudaMemcpyDeviceToHost));
  MS_CUDA_CHECK(cudaMemcpy(out.fail_step, d_fs.p, n * sizeof(int64_t), cudaMemcpyDeviceToHost));
  if (!stopped)
    for (int64_t p = 0; p < n; ++p)
      if (spec.active[p / spec.replicas] && out.status[p] == STATUS_OK) out.steps_done[p] += spec.steps;
}

}  // namespace

int device_count() {
  int c = 0;
  if (cudaGetDeviceCount(&c) != cudaSuccess) {
    cudaGetLastError();  // clear the sticky "no driver" error
    return 0;
  }
  return c;
}

std::string device_summary() {
  std::ostringstream os;
  const int c = device_count();
  for (int i = 0; i < c; ++i) {
    cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
    if (i) os << "; ";
    os << prop.name << " (sm_" << prop.major << prop.minor << ", "
       << (prop.totalGlobalMem >> 30) << " GiB)";
  }
  return os.str();
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  std::ostringstream os;
  os << v / 1000 << "." << (v % 1000) / 10;
  return os.str();
}

template <class Real>
RunResult simulate(const RunSpec& spec, const RunBuffers<Real>& out, int device) {
  RunResult r;
  if (!with_any_model<Real>(spec.model_id, spec.params.data(), spec.eps, spec.surrogate,
                            [&](const auto& m) { r = run(m, spec, out, device, nullptr); }))
    throw std::invalid_argument("unknown model id");
  return r;
}

template <class Real>
double time_kernel(const RunSpec& spec, int device) {
  double secs = 0.0;
  std::pair<int, int> d = model_dims(spec.model_id, spec.params.data(), spec.eps);
  const int dim = d.first + d.second;
  std::vector<Real> state(static_cast<size_t>(dim) * spec.n_paths, Real(0));
  std::vector<int8_t> st(spec.n_paths);
  std::vector<int64_t> fs(spec.n_paths);
  RunBuffers<Real> out;
  out.state = state.data();
  out.status = st.data();
  out.fail_step = fs.data();
  with_model<Real>(spec.model_id, spec.params.data(), spec.eps,
                   [&](const auto& m) { run(m, spec, out, device, &secs); });
  return secs;
}

template <class Real>
bool frozen_average(const FrozenSpec& spec, const FrozenBuffers<Real>& out, int device) {
  if (!with_model<Real>(spec.model_id, spec.params.data(), spec.eps,
                        [&](const auto& m) { run_frozen(m, spec, out, device); }))
    throw std::invalid_argument("unknown model id");
  return false;
}

template bool frozen_average<double>(const FrozenSpec&, const FrozenBuffers<double>&, int);
template bool frozen_average<float>(const FrozenSpec&, const FrozenBuffers<float>&, int);
template RunResult simulate<double>(const RunSpec&, const RunBuffers<double>&, int);
template RunResult simulate<float>(const RunSpec&, const RunBuffers<float>&, int);
template double time_kernel<double>(const RunSpec&, int);
template double time_kernel<float>(const RunSpec&, int);

}  // namespace ms::cuda
