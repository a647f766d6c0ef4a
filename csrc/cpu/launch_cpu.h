// OpenMP launcher: paths are processed in blocks of W lanes laid out [component][lane], so
// the per-lane step (model + Philox + Box-Muller) vectorises across paths. Every random number
// is keyed by (seed, path, step), so the result is independent of threads, schedule and chunk
// boundaries; ensemble sums use exact accumulators, so statistics are too.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "multiscale/estimators/window_stats.h"
#include "multiscale/integrators/euler_maruyama.h"
#include "multiscale/run.h"
#include "multiscale/status.h"
#include "multiscale/view.h"

namespace ms::cpu {

// Paths per SIMD block. Models whose size is a runtime parameter (Lorenz-96) use one path per
// block: their loops over hundreds of components vectorise instead.
template <class Real>
constexpr int lanes() {
  return sizeof(Real) == 8 ? 16 : 32;
}
template <class M, class Real>
constexpr int lanes_for() {
  return (M::kNX > 0 || block_eval_v<M>) ? lanes<Real>() : 1;
}

// Work space of a block model's block_coefficients() for W lanes (0 for catalogue models).
template <class M>
int64_t block_work(const M& m, int W) {
  if constexpr (block_eval_v<M>) {
    return m.work_layout(W).total;
  } else {
    (void)m;
    (void)W;
    return 0;
  }
}

// The group of global path g: a block shares one (surrogates with a member per path).
template <class M>
int path_group(const M& m, uint64_t g) {
  if constexpr (block_eval_v<M>) {
    return m.group_of(g);
  } else {
    (void)m;
    (void)g;
    return 0;
  }
}

template <class M>
int n_groups(const M& m) {
  if constexpr (block_eval_v<M>) {
    return m.n_groups();
  } else {
    (void)m;
    return 1;
  }
}

// Block-local buffers, [component][lane]. `a` holds nx components, or nx * nx for a model
// with a noise matrix; `work` is a block model's evaluation space.
template <class Real, int W>
struct Block {
  std::vector<Real> mem, work;
  Real *x, *y, *xn, *yn, *f, *f0, *a, *g, *b, *z;
  std::vector<double> acc1, acc2;  // [n_obs][W] window sums of (v - shift), (v - shift)^2
  alignas(64) int64_t cnt[W];      // states summed this window (live steps only)
  alignas(64) int32_t st[W];  // int32, not int8: mixed-width lanes defeat vectorisation
  alignas(64) int64_t fs[W];
  alignas(64) uint32_t pid[W];  // global path id of each lane (the noise key)
  alignas(64) int64_t row[W];   // buffer row of each lane
  template <class M>
  Block(const M& m, int nobs) : Block(m.nx(), m.ny(), nobs, noise_matrix_v<M> ? m.nx() * m.nx() : m.nx(),
                                      block_work(m, W)) {}
  Block(int nx, int ny, int nobs, int a_len, int64_t work_len) {
    const int n = 4 * nx + a_len + 4 * ny + (nx + ny);
    work.assign(static_cast<size_t>(std::max<int64_t>(work_len, 1)), Real(0));
    mem.assign(static_cast<size_t>(std::max(n, 1)) * W, Real(0));
    Real* p = mem.data();
    auto take = [&](int len) {
      Real* q = p;
      p += static_cast<size_t>(len) * W;
      return q;
    };
    x = take(nx);
    y = take(ny);
    xn = take(nx);
    yn = take(ny);
    f = take(nx);
    f0 = take(nx);
    a = take(a_len);
    g = take(ny);
    b = take(ny);
    z = take(nx + ny);
    acc1.assign(static_cast<size_t>(nobs) * W, 0.0);
    acc2.assign(static_cast<size_t>(nobs) * W, 0.0);
  }
};

// Where a block writes its saved states: traj[p][si][:] for the block's paths, at the save
// steps in [s0, s1] (no barrier between threads is needed for saving).
template <class Real>
struct SaveSink {
  Real* traj;              // [n_paths][nsave][dim] or nullptr
  const int64_t* steps;    // ascending save steps
  int nsave;
  int next;                // index of the first save step > s0
  int dim;
};

// Steps s in [s0, s1) of the call draw the noise of global step step0 + s (RunSpec::step_offset).
// Lane l holds the path of buffer row B.row[l] and global id B.pid[l]; all lanes are in `group`.
template <bool ExactOU, class M, class Real, int W>
void advance_block(const M m, const StepCoef<Real> k, const PhiloxKey key, Block<Real, W>& B, int group,
                   uint64_t step0, int64_t s0, int64_t s1, const ObservableSpec& obs, bool accumulate,
                   int64_t* hist_thread, int nvalid, SaveSink<Real> save) {
  using V = View<Real, W>;
  // Model, coefficients and key are taken by value: as locals they cannot alias the block
  // buffers, so the compiler keeps them in registers and the lane loop vectorises.
  // Dimensions from the model: compile-time constants for fixed-size models, which lets the
  // lane loop below unroll its component loops and vectorise across paths.
  const int nx = m.nx(), ny = m.ny();
  const int nobs = obs.n_obs();
  for (int64_t s = s0; s < s1; ++s) {
    if constexpr (block_eval_v<M>) m.template block_coefficients<W>(group, B.x, B.f, B.a, B.work.data());
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      const StepScratch<V> S{V{B.f + l}, V{B.f0 + l}, V{B.a + l}, V{B.g + l}, V{B.b + l},
                             V{B.z + l}};
      const bool ok = em_step<ExactOU>(m, k, V{B.x + l}, V{B.y + l}, V{B.xn + l}, V{B.yn + l}, S,
                                       key, B.pid[l], step0 + static_cast<uint64_t>(s));
      const bool live = B.st[l] == STATUS_OK;
      const bool commit = live & ok;
      for (int i = 0; i < nx; ++i) B.x[i * W + l] = commit ? B.xn[i * W + l] : B.x[i * W + l];
      for (int j = 0; j < ny; ++j) B.y[j * W + l] = commit ? B.yn[j * W + l] : B.y[j * W + l];
      const bool fail = live & !ok;
      B.st[l] = fail ? static_cast<int32_t>(STATUS_NONFINITE) : B.st[l];
      B.fs[l] = fail ? s : B.fs[l];
    }
    if (save.traj != nullptr && save.next < save.nsave && save.steps[save.next] == s + 1) {
      const Real nan = std::numeric_limits<Real>::quiet_NaN();
      for (int l = 0; l < nvalid; ++l) {
        Real* dst = save.traj + (static_cast<size_t>(B.row[l]) * save.nsave + save.next) * save.dim;
        const bool alive = B.st[l] == STATUS_OK;  // failed paths read NaN from their failure on
        for (int i = 0; i < nx; ++i) dst[i] = alive ? B.x[i * W + l] : nan;
        for (int j = 0; j < ny; ++j) dst[nx + j] = alive ? B.y[j * W + l] : nan;
      }
      ++save.next;
    }
    if (accumulate) {
      for (int q = 0; q < nobs; ++q) {
        const int v = obs.vars[q];
        const Real* src = v < nx ? B.x + v * W : B.y + (v - nx) * W;
        const double sh = obs.shift[q];
        double* a1 = B.acc1.data() + q * W;
        double* a2 = B.acc2.data() + q * W;
        // Only live path-states count, so statistics and histograms describe one population.
#pragma omp simd
        for (int l = 0; l < W; ++l) {
          const double d = B.st[l] == STATUS_OK ? static_cast<double>(src[l]) - sh : 0.0;
          a1[l] += d;
          a2[l] += d * d;
        }
      }
#pragma omp simd
      for (int l = 0; l < W; ++l) B.cnt[l] += B.st[l] == STATUS_OK ? 1 : 0;
      if (hist_thread != nullptr) {
        const int bins = obs.bins;
        for (int q = 0; q < nobs; ++q) {
          const int v = obs.vars[q];
          const Real* src = v < nx ? B.x + v * W : B.y + (v - nx) * W;
          const double lo = obs.lo[q], hi = obs.hi[q];
          const double scale = bins / (hi - lo);
          int64_t* h = hist_thread + static_cast<size_t>(q) * (bins + 2);
          // Bin indices in a vector loop (-1: lane not live), then scalar increments.
          alignas(64) int32_t idx[W];
#pragma omp simd
          for (int l = 0; l < W; ++l) {
            const double val = static_cast<double>(src[l]);
            // clamp before the cast: out-of-range double -> int conversion is undefined
            const double r = std::max(0.0, std::min((val - lo) * scale, static_cast<double>(bins - 1)));
            const int inner = 1 + static_cast<int>(r);
            const int i = val < lo ? 0 : (val >= hi ? bins + 1 : inner);
            idx[l] = B.st[l] == STATUS_OK ? i : -1;
          }
          for (int l = 0; l < nvalid; ++l)
            if (idx[l] >= 0) ++h[idx[l]];
        }
      }
    }
  }
}

// Runs the whole ensemble. Chunk boundaries (window edges and periodic breaks to poll for
// interruption) never change the numbers: state round-trips exactly through `state`. Saves
// happen inside the block loop, so many save points cost no synchronisation.
template <class M, class Real>
RunResult run(const M& m, const RunSpec& spec, const RunBuffers<Real>& out) {
  constexpr int W = lanes_for<M, Real>();
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  const int64_t n = spec.n_paths;
  // Blocks of W consecutive rows; with several groups (a surrogate with a member per path), the
  // rows of each group in order, so that every block shares one group. Either way a block's
  // paths, and so the numbers, depend only on (path_offset, n_paths), never on threads.
  std::vector<int64_t> order;               // rows in block order (empty: identity)
  std::vector<int64_t> blk_start{0};        // block b covers order[blk_start[b] .. + blk_len[b])
  std::vector<int> blk_len, blk_group;
  const int G = n_groups(m);
  if (G <= 1) {
    for (int64_t p0 = 0; p0 < n; p0 += W) {
      blk_len.push_back(static_cast<int>(std::min<int64_t>(W, n - p0)));
      blk_group.push_back(0);
      blk_start.push_back(p0 + blk_len.back());
    }
  } else {
    std::vector<std::vector<int64_t>> rows(G);
    for (int64_t p = 0; p < n; ++p) rows[path_group(m, spec.path_offset + p)].push_back(p);
    blk_start.clear();
    for (int g = 0; g < G; ++g)
      for (size_t i = 0; i < rows[g].size(); i += W) {
        blk_start.push_back(static_cast<int64_t>(order.size()));
        const int len = static_cast<int>(std::min<size_t>(W, rows[g].size() - i));
        for (int l = 0; l < len; ++l) order.push_back(rows[g][i + l]);
        blk_len.push_back(len);
        blk_group.push_back(g);
      }
    blk_start.push_back(static_cast<int64_t>(order.size()));
  }
  const int64_t nblocks = static_cast<int64_t>(blk_len.size());
  StepCoef<Real> k = make_step_coef<Real>(m, spec.dt, spec.eps);
  k.substeps = spec.noise_substeps;
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const ObservableSpec& obs = spec.obs;
  const int nobs = obs.n_obs();
  const int nwin = obs.n_windows();
  const int hist_len = obs.bins > 0 ? nobs * (obs.bins + 2) : 0;
  const int nsave = static_cast<int>(spec.save_steps.size());
  const int threads = spec.threads > 0 ? spec.threads : omp_get_max_threads();

  for (int64_t p = 0; p < n; ++p) {
    out.status[p] = STATUS_OK;
    out.fail_step[p] = -1;
  }

  // Polling about every 2^26 component-steps (~0.2 s of one core) keeps Ctrl-C response under a
  // second while the per-chunk barrier costs well under 1%.
  const std::vector<int64_t> edges =
      chunk_edges(spec, static_cast<double>(n) * std::max(dim, 1), 67108864.0, false);

  // Per-path window sums persist across chunks of one window: O(n_paths x n_obs) memory.
  std::vector<double> wsum1(static_cast<size_t>(nobs) * n, 0.0), wsum2(wsum1.size(), 0.0);
  std::vector<int64_t> wcount(nobs > 0 ? n : 0, 0);
  std::vector<int64_t> hist_threads(static_cast<size_t>(threads) * hist_len, 0);

  int save_idx = 0;
  if (out.traj != nullptr && nsave > 0 && spec.save_steps[0] == 0) {
    for (int64_t p = 0; p < n; ++p)
      std::copy(out.state + p * dim, out.state + (p + 1) * dim,
                out.traj + static_cast<size_t>(p) * nsave * dim);
    save_idx = 1;
  }

  RunResult result;
  int win = 0;
  for (size_t c = 0; c + 1 < edges.size(); ++c) {
    const int64_t s0 = edges[c], s1 = edges[c + 1];
    while (win < nwin && obs.window_edges[win + 1] <= s0) ++win;
    const bool accumulate = win < nwin && obs.window_edges[win] <= s0 && s1 <= obs.window_edges[win + 1];
    while (save_idx < nsave && spec.save_steps[save_idx] <= s0) ++save_idx;
    const SaveSink<Real> sink{out.traj, spec.save_steps.data(), nsave, save_idx, dim};

#pragma omp parallel num_threads(threads)
    {
      Block<Real, W> B(m, nobs);
      int64_t* hist_t = (accumulate && hist_len > 0)
                            ? hist_threads.data() + static_cast<size_t>(omp_get_thread_num()) * hist_len
                            : nullptr;
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int nvalid = blk_len[blk];
        for (int l = 0; l < W; ++l) {
          const int64_t slot = blk_start[blk] + std::min(l, nvalid - 1);  // padding lanes copy a real path
          const int64_t p = order.empty() ? slot : order[slot];
          B.row[l] = p;
          B.pid[l] = static_cast<uint32_t>(spec.path_offset + p);
          const Real* src = out.state + p * dim;
          for (int i = 0; i < nx; ++i) B.x[i * W + l] = src[i];
          for (int j = 0; j < ny; ++j) B.y[j * W + l] = src[nx + j];
          B.st[l] = l < nvalid ? out.status[p] : static_cast<int32_t>(STATUS_OK);
          B.fs[l] = l < nvalid ? out.fail_step[p] : -1;
          for (int q = 0; q < nobs; ++q) {
            B.acc1[q * W + l] = l < nvalid ? wsum1[q * n + p] : 0.0;
            B.acc2[q * W + l] = l < nvalid ? wsum2[q * n + p] : 0.0;
          }
          B.cnt[l] = (nobs > 0 && l < nvalid) ? wcount[p] : 0;
        }
        if (spec.exact_ou) {
          advance_block<true>(m, k, key, B, blk_group[blk], spec.step_offset, s0, s1, obs, accumulate, hist_t,
                              nvalid, sink);
        } else {
          advance_block<false>(m, k, key, B, blk_group[blk], spec.step_offset, s0, s1, obs, accumulate, hist_t,
                               nvalid, sink);
        }
        for (int l = 0; l < nvalid; ++l) {
          const int64_t p = B.row[l];
          Real* dst = out.state + p * dim;
          for (int i = 0; i < nx; ++i) dst[i] = B.x[i * W + l];
          for (int j = 0; j < ny; ++j) dst[nx + j] = B.y[j * W + l];
          out.status[p] = static_cast<int8_t>(B.st[l]);
          out.fail_step[p] = B.fs[l];
          for (int q = 0; q < nobs; ++q) {
            wsum1[q * n + p] = B.acc1[q * W + l];
            wsum2[q * n + p] = B.acc2[q * W + l];
          }
          if (nobs > 0) wcount[p] = B.cnt[l];
        }
      }
    }

    // Window complete: reduce per-path sums exactly (order-independent), then reset.
    if (accumulate && s1 == obs.window_edges[win + 1]) {
      finish_window(obs, win, n, wcount.data(), wsum1.data(), wsum2.data(), out, threads);
      std::fill(wsum1.begin(), wsum1.end(), 0.0);
      std::fill(wsum2.begin(), wsum2.end(), 0.0);
      std::fill(wcount.begin(), wcount.end(), 0);
      if (hist_len > 0) {
        int64_t* dst = out.hist + static_cast<size_t>(win) * hist_len;
        for (int t = 0; t < threads; ++t)
          for (int i = 0; i < hist_len; ++i) dst[i] += hist_threads[static_cast<size_t>(t) * hist_len + i];
        std::fill(hist_threads.begin(), hist_threads.end(), 0);
      }
    }

    if (s1 < spec.n_steps && spec.should_stop && spec.should_stop()) {
      for (int64_t p = 0; p < n; ++p)
        if (out.status[p] == STATUS_OK) out.status[p] = STATUS_INTERRUPTED;
      result.interrupted = true;
      break;
    }
  }
  return result;
}

}  // namespace ms::cpu
