// Host-side description of an ensemble run, shared by the CPU and CUDA launchers.
// Plain C++ (no Python): the bindings fill it from validated NumPy arrays.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "models/surrogate.h"

namespace ms {

// Streaming observables: for each window of steps (edges[w], edges[w+1]] and each chosen state
// component, the mean and variance over (live paths x states in the window), and optionally a
// histogram. Memory is O(n_paths x n_obs), independent of the number of steps.
struct ObservableSpec {
  std::vector<int> vars;               // state component indices (slow first, then fast)
  std::vector<double> shift;           // per var: subtracted before summing (conditioning)
  std::vector<int64_t> window_edges;   // ascending step indices, n_windows + 1 of them
  int bins = 0;                        // 0: no histogram
  std::vector<double> lo, hi;          // per var histogram range
  int n_obs() const { return static_cast<int>(vars.size()); }
  int n_windows() const {
    return window_edges.empty() ? 0 : static_cast<int>(window_edges.size()) - 1;
  }
};

// model_id of a learned surrogate (models/surrogate.h): its description and arrays travel in
// RunSpec::surrogate / PassageSpec::surrogate instead of `params`.
constexpr int kSurrogateModel = -1;

struct SurrogateArrays {
  SurrogateSpec spec;
  std::vector<double> params;  // flat, portable-format order (SurrogateModel::n_params)
  std::vector<double> tables;  // [groups][n_grid][4] or empty
};

struct RunSpec {
  int model_id = 0;
  std::vector<double> params;
  SurrogateArrays surrogate;
  int64_t n_paths = 0;
  uint64_t path_offset = 0;  // global index of path 0 (chunked / distributed runs)
  // Index of the first step of this call: a continued run keys its noise by the global step.
  // Only the RNG key uses it; save steps, windows and fail_step stay local to the call.
  uint64_t step_offset = 0;
  uint64_t seed = 0;
  double eps = 1.0;
  double dt = 0.0;
  int64_t n_steps = 0;
  std::vector<int64_t> save_steps;  // ascending, in [0, n_steps]
  bool exact_ou = false;
  int noise_substeps = 1;  // surrogates: StepCoef::substeps (the step-size check)
  int threads = 0;  // 0: OpenMP default
  ObservableSpec obs;
  // Polled by the launcher from the calling thread between chunks (a few times a second);
  // returning true stops the run. The bindings use it for Ctrl-C.
  std::function<bool()> should_stop;
};

// Output buffers (caller-allocated). Real is float or double.
template <class Real>
struct RunBuffers {
  Real* state = nullptr;        // [n_paths][dim]: initial state in, final state out
  Real* traj = nullptr;         // [n_paths][n_save][dim], or nullptr
  int8_t* status = nullptr;     // [n_paths]
  int64_t* fail_step = nullptr; // [n_paths]: step index at which the path failed, else -1
  double* obs_mean = nullptr;   // [n_windows][n_obs]
  double* obs_var = nullptr;    // [n_windows][n_obs]  (unbiased)
  int64_t* obs_count = nullptr; // [n_windows][n_obs]  number of path-states summed
  int64_t* hist = nullptr;      // [n_windows][n_obs][bins + 2]: underflow, bins..., overflow
};

// Returned by the launchers.
struct RunResult {
  bool interrupted = false;
};


// First-passage segments (estimators/first_passage.h): each path runs from its own start state
// until its reaction coordinate leaves (lo, hi), exceeds its stopping level, or max_steps pass.
// Path i draws the noise of (seed, path_ids[i], step), so a segment can be replayed exactly.
struct PassageSpec {
  int model_id = 0;
  std::vector<double> params;
  SurrogateArrays surrogate;
  double eps = 1.0;
  double dt = 0.0;
  bool exact_ou = false;
  uint64_t seed = 0;
  int64_t n_paths = 0;
  std::vector<double> w;  // [dim] reaction-coordinate weights over (x, y)
  double lo = 0.0, hi = 0.0;
  int64_t max_steps = 0;
  bool bridge = true;
  int threads = 0;
  std::function<bool()> should_stop;
};

struct PassageBuffers {
  double* state = nullptr;           // [n_paths][dim]: start state in, final state out
  const uint32_t* path_ids = nullptr;  // [n_paths]
  const double* level = nullptr;     // [n_paths]: stop when xi > level (+inf: never)
  int8_t* outcome = nullptr;         // [n_paths] Outcome
  int64_t* steps = nullptr;          // [n_paths]
  double* xi_max = nullptr;          // [n_paths]
};

}  // namespace ms
