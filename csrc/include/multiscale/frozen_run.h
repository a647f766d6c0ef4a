// Host-side description of a frozen-x (HMM micro-solver) run, shared by CPU and CUDA launchers.
#pragma once
#include <algorithm>
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

// Accumulated-step count at the start of a call, equal for all active live paths (adaptive
// rounds only ever stop points, never restart them); -1 when nothing is to run.
template <class Real>
int64_t frozen_done0(const FrozenSpec& spec, const FrozenBuffers<Real>& out) {
  const int64_t n = spec.n_points * spec.replicas;
  for (int64_t p = 0; p < n; ++p)
    if (spec.active[p / spec.replicas] && out.status[p] == 0) return out.steps_done[p];
  return -1;
}

// Chunk edges of a frozen run: burn-in pieces of about `work_per_poll / work_per_step` steps,
// accumulation in whole batches, so the calling thread can poll for interruption in between.
inline std::vector<int64_t> frozen_chunk_edges(const FrozenSpec& spec, double work_per_step,
                                               double work_per_poll) {
  const int64_t total = spec.burn_steps + spec.steps;
  const int64_t poll =
      std::max<int64_t>(1, static_cast<int64_t>(work_per_poll / std::max(work_per_step, 1.0)));
  std::vector<int64_t> edges{0, spec.burn_steps, total};
  for (int64_t s = poll; s < spec.burn_steps; s += poll) edges.push_back(s);
  const int64_t poll_acc = std::max<int64_t>(1, poll / spec.batch_len) * spec.batch_len;
  for (int64_t s = spec.burn_steps + poll_acc; s < total; s += poll_acc) edges.push_back(s);
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return edges;
}

}  // namespace ms
