// Integrate an exported surrogate SDE dX = b(X) dt + S(X) dW by Euler-Maruyama in C++, with the
// header-only evaluator (no Python, no libtorch), and print ensemble statistics.
//
//   euler_maruyama FILE [n_paths=2000] [n_steps=500] [dt=0.01] [seed=1] [x0=0]
//
// Uses the ensemble-mean drift and the Cholesky factor of the ensemble-mean diffusion. Output:
// "mean <i> <value>" and "var <i> <value>" per slow variable at the final time.
// Also:  euler_maruyama --eval FILE MEMBER < states   (same output as examples/downstream/c/evaluate.c)
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <random>
#include <string>
#include <vector>

#include "multiscale/surrogate/evaluator.h"

static int evaluate(const std::string& path, int member) {
  const auto s = ms::surrogate::Surrogate::load(path);
  const int m = s.dim();
  long n = 0;
  std::cin >> n;
  std::vector<double> x(n * m), b(m), a(m * m), q(m * m);
  for (auto& v : x) std::cin >> v;
  for (long i = 0; i < n; ++i) {
    s.drift(&x[i * m], b.data(), member);
    s.diffusion(&x[i * m], a.data(), member);
    if (!s.noise(&x[i * m], q.data(), member)) throw std::runtime_error("diffusion not positive definite");
    std::printf("drift");
    for (double v : b) std::printf(" %.17g", v);
    std::printf("\ndiffusion");
    for (double v : a) std::printf(" %.17g", v);
    std::printf("\nnoise");
    for (double v : q) std::printf(" %.17g", v);
    std::printf("\n");
  }
  return 0;
}

int main(int argc, char** argv) try {
  if (argc >= 2 && std::string(argv[1]) == "--eval") {
    if (argc != 4) throw std::invalid_argument("usage: euler_maruyama --eval FILE MEMBER < states");
    return evaluate(argv[2], std::atoi(argv[3]));
  }
  if (argc < 2) throw std::invalid_argument("usage: euler_maruyama FILE [n_paths] [n_steps] [dt] [seed] [x0]");
  const auto s = ms::surrogate::Surrogate::load(argv[1]);
  const long n_paths = argc > 2 ? std::atol(argv[2]) : 2000;
  const long n_steps = argc > 3 ? std::atol(argv[3]) : 500;
  const double dt = argc > 4 ? std::atof(argv[4]) : 0.01;
  const unsigned long seed = argc > 5 ? std::strtoul(argv[5], nullptr, 10) : 1;
  const double x0 = argc > 6 ? std::atof(argv[6]) : 0.0;
  if (n_paths < 2 || n_steps < 0 || !(dt > 0)) throw std::invalid_argument("need n_paths >= 2, n_steps >= 0, dt > 0");
  const int m = s.dim();
  std::vector<double> x(n_paths * m, x0), b(n_paths * m), S(n_paths * m * m), xi(m);
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal;
  const double sq = std::sqrt(dt);
  for (long k = 0; k < n_steps; ++k) {
    s.drift_batch(x.data(), n_paths, b.data());
    if (!s.noise_batch(x.data(), n_paths, S.data())) throw std::runtime_error("diffusion not positive definite");
    for (long p = 0; p < n_paths; ++p) {
      for (int i = 0; i < m; ++i) xi[i] = normal(rng);
      for (int i = 0; i < m; ++i) {
        double dw = 0.0;
        for (int j = 0; j <= i; ++j) dw += S[(p * m + i) * m + j] * xi[j];
        x[p * m + i] += b[p * m + i] * dt + sq * dw;
      }
    }
  }
  for (int i = 0; i < m; ++i) {
    double mean = 0.0, var = 0.0;
    for (long p = 0; p < n_paths; ++p) mean += x[p * m + i];
    mean /= n_paths;
    for (long p = 0; p < n_paths; ++p) var += (x[p * m + i] - mean) * (x[p * m + i] - mean);
    var /= (n_paths - 1);
    std::printf("mean %d %.17g\nvar %d %.17g\n", i, mean, i, var);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "error: %s\n", e.what());
  return 1;
}
