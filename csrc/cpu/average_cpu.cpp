// OpenMP launcher of the frozen-x averaging kernel: blocks of W (point, replica) paths, the
// lane loop over paths vectorised as in the simulation launcher; the per-path numerics are
// estimators/frozen_average.h, shared with CUDA.
#include "average_cpu.h"

#include <omp.h>

#include <algorithm>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "launch_cpu.h"
#include "multiscale/dispatch.h"
#include "multiscale/estimators/frozen_average.h"

namespace ms::cpu {

namespace {

template <bool ExactOU, bool Corrector, class M, class Real, int W>
void frozen_block(const M m, const FrozenCoef<Real> k, const FrozenLayout L, const PhiloxKey key,
                  const FrozenSpec& spec, const FrozenBuffers<Real>& out, int64_t p0, int64_t s0,
                  int64_t s1, int64_t done0, Real* mem, double* accb) {
  using V = View<Real, W>;
  using A = View<double, W>;
  const int nx = m.nx();
  const int ss = L.state_size();
  const int64_t n = spec.n_points * spec.replicas;
  const int nvalid = static_cast<int>(std::min<int64_t>(W, n - p0));
  Real* x = mem;
  Real* ys = x + nx * W;
  Real* scratch = ys + ss * W;
  alignas(64) int32_t st[W];
  alignas(64) int32_t act[W];
  alignas(64) int64_t fs[W];
  for (int l = 0; l < W; ++l) {
    const int64_t p = p0 + std::min(l, nvalid - 1);
    const int64_t pt = p / spec.replicas;
    for (int i = 0; i < nx; ++i) x[i * W + l] = Real(spec.x_points[pt * nx + i]);
    for (int j = 0; j < ss; ++j) ys[j * W + l] = out.ystate[p * ss + j];
    for (int a = 0; a < L.size; ++a) accb[a * W + l] = out.acc[p * L.size + a];
    st[l] = out.status[p];
    fs[l] = out.fail_step[p];
    act[l] = (l < nvalid && spec.active[pt] && st[l] == STATUS_OK) ? 1 : 0;
  }
  const int ny = m.ny();
  auto scratch_of = [&](int l) {
    Real* q = scratch + l;
    FrozenScratch<V> s{V{q}, V{q + nx * W}, V{q + (nx + ny) * W}, V{q + (nx + 2 * ny) * W},
                       V{q + (nx + 3 * ny) * W}, V{q + (nx + 4 * ny) * W},
                       V{q + (2 * nx + 4 * ny) * W}};
    return s;
  };
  const bool burning = s0 < spec.burn_steps;
  alignas(64) Real zc[W];  // second normal of the current pair (one fast variable)
  bool cache_valid = false;
  // One step of every lane; Accumulate is a template argument so the lane loop has no
  // divergent control flow and vectorises.
  auto lanes_step = [&](auto accumulate_tag, auto refill_tag, int64_t rng_step) {
    constexpr bool Acc = decltype(accumulate_tag)::value;
    constexpr bool Refill = decltype(refill_tag)::value;
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      const bool live = act[l] != 0;
      // The scratch views are built in the call, not in a named local: a named struct of
      // pointers is kept per lane in memory and defeats vectorisation of the corrector path.
      frozen_normals<Refill, Real>(key, static_cast<uint32_t>(p0 + l),
                                   static_cast<uint64_t>(rng_step), ny, scratch_of(l).z, zc[l]);
      const bool ok = frozen_step<ExactOU, Acc, Corrector>(m, k, L, V{x + l}, V{ys + l},
                                                           scratch_of(l), A{accb + l}, live);
      const bool fail = live & !ok;
      st[l] = fail ? static_cast<int32_t>(STATUS_NONFINITE) : st[l];
      fs[l] = fail ? rng_step : fs[l];
      act[l] = fail ? 0 : act[l];
    }
  };
  // One step of every lane. Accumulate and the normal-pair refill are template arguments so the
  // lane loop has no divergent control flow and vectorises.
  auto step_all = [&](auto accumulate_tag, int64_t s) {
    constexpr bool Acc = decltype(accumulate_tag)::value;
    // RNG step: burn-in steps are 0..burn_total-1, accumulation step j is burn_total + j.
    const int64_t rng_step = Acc ? spec.burn_total + done0 + (s - spec.burn_steps) : s;
    if ((rng_step & 1) == 0 || !cache_valid)
      lanes_step(accumulate_tag, std::true_type{}, rng_step);
    else
      lanes_step(accumulate_tag, std::false_type{}, rng_step);
    cache_valid = true;
  };
  for (int64_t s = s0; s < s1; ++s) {
    if (burning) {
      step_all(std::false_type{}, s);
      continue;
    }
    if (s == spec.burn_steps && done0 == 0) {
      for (int l = 0; l < W; ++l)
        if (act[l]) frozen_block_start(m, k, L, V{x + l}, V{ys + l}, scratch_of(l), A{accb + l});
    }
    step_all(std::true_type{}, s);
    if (((done0 + (s - spec.burn_steps) + 1) % spec.batch_len) == 0) {
      const int64_t batch_index = (done0 + (s - spec.burn_steps) + 1) / spec.batch_len - 1;
      for (int l = 0; l < W; ++l) {
        if (!act[l]) continue;
        frozen_batch_close(m, L, spec.batch_len, batch_index, A{accb + l});
        frozen_block_start(m, k, L, V{x + l}, V{ys + l}, scratch_of(l), A{accb + l});
      }
    }
  }
  for (int l = 0; l < nvalid; ++l) {
    const int64_t p = p0 + l;
    const int64_t pt = p / spec.replicas;
    if (!spec.active[pt]) continue;
    for (int j = 0; j < ss; ++j) out.ystate[p * ss + j] = ys[j * W + l];
    for (int a = 0; a < L.size; ++a) out.acc[p * L.size + a] = accb[a * W + l];
    out.status[p] = static_cast<int8_t>(st[l]);
    out.fail_step[p] = fs[l];
  }
}

template <class M, class Real>
bool run_frozen(const M& m, const FrozenSpec& spec, const FrozenBuffers<Real>& out) {
  constexpr int W = lanes_for<M, Real>();
  const int nx = m.nx(), ny = m.ny();
  const FrozenLayout L = FrozenLayout::make(nx, ny, M::kScaling == Scaling::kHomogenization, spec.corrector);
  const FrozenCoef<Real> k = make_frozen_coef<Real>(m, spec.dtau, spec.fd_step);
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const int64_t n = spec.n_points * spec.replicas;
  const int64_t nblocks = (n + W - 1) / W;
  const int threads = spec.threads > 0 ? spec.threads : omp_get_max_threads();
  const int ss = L.state_size();
  const size_t mem_len = static_cast<size_t>(nx + ss + 3 * nx + 4 * ny + ny) * W;
  const int64_t done0 = frozen_done0(spec, out);
  if (done0 < 0) return false;  // nothing to run
  const int64_t total = spec.burn_steps + spec.steps;
  const std::vector<int64_t> edges = frozen_chunk_edges(
      spec, static_cast<double>(n) * std::max(ss, 1) * (1 + 2 * nx), 67108864.0);
  for (size_t c = 0; c + 1 < edges.size(); ++c) {
    const int64_t s0 = edges[c], s1 = edges[c + 1];
#pragma omp parallel num_threads(threads)
    {
      std::vector<Real> mem(mem_len);
      std::vector<double> accb(static_cast<size_t>(std::max(L.size, 1)) * W);
#pragma omp for schedule(dynamic, 1)
      for (int64_t blk = 0; blk < nblocks; ++blk) {
        const int64_t p0 = blk * W;
        bool any = false;
        for (int64_t p = p0; p < std::min(n, p0 + W); ++p) any |= spec.active[p / spec.replicas] != 0;
        if (!any) continue;
        auto go = [&](auto exact_tag, auto corr_tag) {
          frozen_block<decltype(exact_tag)::value, decltype(corr_tag)::value, M, Real, W>(
              m, k, L, key, spec, out, p0, s0, s1, done0, mem.data(), accb.data());
        };
        if (spec.exact_ou) {
          if (L.corrector) go(std::true_type{}, std::true_type{});
          else go(std::true_type{}, std::false_type{});
        } else {
          if (L.corrector) go(std::false_type{}, std::true_type{});
          else go(std::false_type{}, std::false_type{});
        }
      }
    }
    if (s1 < total && spec.should_stop && spec.should_stop()) return true;
  }
  for (int64_t p = 0; p < n; ++p)
    if (spec.active[p / spec.replicas] && out.status[p] == STATUS_OK) out.steps_done[p] += spec.steps;
  return false;
}

}  // namespace

template <class Real>
bool frozen_average(const FrozenSpec& spec, const FrozenBuffers<Real>& out) {
  bool stopped = false;
  if (!with_model<Real>(spec.model_id, spec.params.data(), spec.eps,
                        [&](const auto& m) { stopped = run_frozen(m, spec, out); }))
    throw std::invalid_argument("unknown model id");
  return stopped;
}

std::pair<int, int> frozen_sizes(int model_id, const double* params, double eps, bool corrector) {
  std::pair<int, int> r{-1, -1};
  with_model<double>(model_id, params, eps, [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    const FrozenLayout L =
        FrozenLayout::make(m.nx(), m.ny(), M::kScaling == Scaling::kHomogenization, corrector);
    r = {L.size, L.state_size()};
  });
  return r;
}

template bool frozen_average<double>(const FrozenSpec&, const FrozenBuffers<double>&);
template bool frozen_average<float>(const FrozenSpec&, const FrozenBuffers<float>&);

}  // namespace ms::cpu
