#include "simulate_cpu.h"

#include <stdexcept>

#include "launch_cpu.h"
#include "multiscale/dispatch.h"

namespace ms::cpu {

template <class Real>
RunResult simulate(const RunSpec& spec, const RunBuffers<Real>& out) {
  RunResult r;
  const bool known = with_any_model<Real>(spec.model_id, spec.params.data(), spec.eps, spec.surrogate,
                                          [&](const auto& m) { r = run(m, spec, out); });
  if (!known) throw std::invalid_argument("unknown model id");  // bindings validate first
  return r;
}

namespace {
template <class Real, int N>
double probe(int64_t n_paths, int64_t n_steps, uint64_t seed, int threads) {
  constexpr int W = lanes<Real>();
  const PhiloxKey key = PhiloxKey::from_seed(seed);
  const int64_t nblocks = (n_paths + W - 1) / W;
  double total = 0.0;
  const int nt = threads > 0 ? threads : omp_get_max_threads();
#pragma omp parallel num_threads(nt) reduction(+ : total)
  {
    alignas(64) Real z[N * W];
    alignas(64) Real acc[W] = {};
#pragma omp for schedule(dynamic, 1)
    for (int64_t blk = 0; blk < nblocks; ++blk) {
      for (int64_t s = 0; s < n_steps; ++s) {
#pragma omp simd
        for (int l = 0; l < W; ++l) {
          View<Real, W> v{z + l};
          normals<Real>(key, STREAM_DYNAMICS, static_cast<uint32_t>(blk * W + l),
                        static_cast<uint64_t>(s), N, v);
          for (int i = 0; i < N; ++i) acc[l] += z[i * W + l];
        }
      }
    }
    for (int l = 0; l < W; ++l) total += static_cast<double>(acc[l]);
  }
  return total;
}
}  // namespace

// The same generator calls as a simulation step, with the arithmetic of the SDE removed: the
// throughput ceiling of any kernel that draws N normals per path-step.
template <class Real>
double normals_throughput_probe(int64_t n_paths, int64_t n_steps, int normals_per_step,
                                uint64_t seed, int threads) {
  switch (normals_per_step) {
    case 1: return probe<Real, 1>(n_paths, n_steps, seed, threads);
    case 2: return probe<Real, 2>(n_paths, n_steps, seed, threads);
    case 4: return probe<Real, 4>(n_paths, n_steps, seed, threads);
    default: throw std::invalid_argument("normals_per_step must be 1, 2 or 4");
  }
}

template <class Real>
void fill_normals(uint64_t seed, uint64_t path0, int64_t n_paths, uint64_t step, int n, Real* out,
                  uint32_t stream) {
  const PhiloxKey key = PhiloxKey::from_seed(seed);
  for (int64_t p = 0; p < n_paths; ++p) {
    View<Real, 1> v{out + p * n};
    normals<Real>(key, stream, static_cast<uint32_t>(path0 + p), step, n, v);
  }
}

template RunResult simulate<double>(const RunSpec&, const RunBuffers<double>&);
template RunResult simulate<float>(const RunSpec&, const RunBuffers<float>&);
template double normals_throughput_probe<double>(int64_t, int64_t, int, uint64_t, int);
template double normals_throughput_probe<float>(int64_t, int64_t, int, uint64_t, int);
template void fill_normals<double>(uint64_t, uint64_t, int64_t, uint64_t, int, double*, uint32_t);
template void fill_normals<float>(uint64_t, uint64_t, int64_t, uint64_t, int, float*, uint32_t);

}  // namespace ms::cpu

namespace ms::cpu {
int lanes_float64() { return lanes<double>(); }
int lanes_float32() { return lanes<float>(); }
// Reported from this translation unit because it is the one compiled with the kernel flags.
const char* simd_level() {
#if defined(__AVX512F__)
  return "avx512";
#elif defined(__AVX2__)
  return "avx2";
#elif defined(__SSE2__)
  return "sse2";
#else
  return "scalar";
#endif
}
}  // namespace ms::cpu
