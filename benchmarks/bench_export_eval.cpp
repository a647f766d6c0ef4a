// Drift evaluations per second of the header-only C++ evaluator (used by bench_export.py).
//   bench_export_eval FILE N_STATES REPEATS  -> "single <evals/s>" and "batch <evals/s>"
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "multiscale/surrogate/evaluator.h"

int main(int argc, char** argv) {
  if (argc != 4) return 2;
  const auto s = ms::surrogate::Surrogate::load(argv[1]);
  const long n = std::atol(argv[2]);
  const int reps = std::atoi(argv[3]);
  const int m = s.dim();
  std::vector<double> x(n * m), b(n * m);
  std::mt19937_64 rng(1);
  std::uniform_real_distribution<double> u(-2.0, 2.0);
  for (auto& v : x) v = u(rng);
  double sink = 0.0, best_single = 0.0, best_batch = 0.0;
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (long i = 0; i < n; ++i) {
      s.drift(&x[i * m], &b[i * m]);
      sink += b[i * m];
    }
    auto t1 = std::chrono::steady_clock::now();
    s.drift_batch(x.data(), n, b.data());
    sink += b[0];
    auto t2 = std::chrono::steady_clock::now();
    best_single = std::max(best_single, n / std::chrono::duration<double>(t1 - t0).count());
    best_batch = std::max(best_batch, n / std::chrono::duration<double>(t2 - t1).count());
  }
  std::printf("single %.6g\nbatch %.6g\nsink %.3g\n", best_single, best_batch, sink);
  return 0;
}
