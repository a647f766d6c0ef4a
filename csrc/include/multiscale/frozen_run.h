// Host-side description of a frozen-x (HMM micro-solver) run, shared by CPU and CUDA launchers.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

namespace ms {

struct FrozenSpec {
  int model_id = 0;
  std::vector<double> params;
  double eps = 1.0;               // only for models whose functions use it
  int64_t n_points = 0, replicas = 0;  // paths = n_points * replicas, path = point * R + r
  std::vector<double> x_points;   // [n_points][nx]
  std::vector<uint8_t> active;    // [n_points]: run this point in this call
  uint64_t seed = 0;
  double dtau = 0.0;              // fast-time step
  int64_t burn_steps = 0;         // run before accumulating (first call only)
  int64_t burn_total = 0;         // burn-in length of the run (RNG step offset of accumulation)
  int64_t steps = 0;              // accumulation steps this call (multiple of batch_len)
  int64_t batch_len = 1;
  bool exact_ou = false;
  bool corrector = false;
  double fd_step = 1e-4;
  int threads = 0;
  std::function<bool()> should_stop;
};

template <class Real>
struct FrozenBuffers {
  Real* ystate = nullptr;        // [n_paths][state_size]
  double* acc = nullptr;         // [n_paths][layout.size]
  int64_t* steps_done = nullptr; // [n_paths] accumulated steps so far
  int8_t* status = nullptr;      // [n_paths]
  int64_t* fail_step = nullptr;  // [n_paths]
};

}  // namespace ms
