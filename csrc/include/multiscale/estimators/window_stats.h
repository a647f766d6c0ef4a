// End-of-window reduction of per-path sums into ensemble mean/variance (host only).
// Exact sums make the result independent of thread count, chunking and path distribution.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "../run.h"
#include "exact_sum.h"

namespace ms {

// wsum1/wsum2: [n_obs][n_paths] sums of (v - shift) and (v - shift)^2 over the states of the
// window at which the path was live (status OK); count: [n_paths] number of such states. A path
// that fails mid-window contributes its states before the failure, exactly as the histogram does.
template <class Real>
void finish_window(const ObservableSpec& obs, int win, int64_t n, const int64_t* count,
                   const double* wsum1, const double* wsum2, const RunBuffers<Real>& out,
                   int threads) {
  const int nobs = obs.n_obs();
  int64_t N = 0;
  for (int64_t p = 0; p < n; ++p) N += count[p];
  for (int q = 0; q < nobs; ++q) {
    ExactSum S1, S2;
#pragma omp parallel num_threads(threads)
    {
      ExactSum t1, t2;
#pragma omp for schedule(static) nowait
      for (int64_t p = 0; p < n; ++p) {
        t1.add(wsum1[q * n + p]);
        t2.add(wsum2[q * n + p]);
      }
#pragma omp critical
      {
        S1.merge(t1);  // integer addition: merge order does not matter
        S2.merge(t2);
      }
    }
    const size_t o = static_cast<size_t>(win) * nobs + q;
    out.obs_count[o] = N;
    const double m1 = N > 0 ? S1.value() / static_cast<double>(N) : std::nan("");
    const double m2 = N > 0 ? S2.value() / static_cast<double>(N) : std::nan("");
    out.obs_mean[o] = obs.shift[q] + m1;
    // m2 = inf (squares overflowed) gives inf - m1^2: inf, or NaN when m1^2 overflowed too,
    // which max(0, NaN) would turn into 0; the variance is then inf, as NumPy's.
    const double d = std::isinf(m2) && m2 > 0 && !std::isnan(m1) ? m2 : m2 - m1 * m1;
    out.obs_var[o] = N > 1 ? (std::isnan(d) ? d : std::max(0.0, d)) * (static_cast<double>(N) / (N - 1))
                           : std::nan("");
  }
}

// Chunk edges of a run: union of 0, n_steps, window edges, save steps (if the launcher saves
// between chunks), and periodic breaks so that the calling thread can poll for interruption
// about every `work_per_poll` units.
inline std::vector<int64_t> chunk_edges(const RunSpec& spec, double work_per_step,
                                        double work_per_poll, bool break_at_saves) {
  std::vector<int64_t> edges{0, spec.n_steps};
  if (break_at_saves)
    for (int64_t s : spec.save_steps) edges.push_back(s);
  for (int64_t s : spec.obs.window_edges) edges.push_back(s);
  const int64_t poll =
      std::max<int64_t>(1, static_cast<int64_t>(work_per_poll / std::max(work_per_step, 1.0)));
  for (int64_t s = poll; s < spec.n_steps; s += poll) edges.push_back(s);
  std::sort(edges.begin(), edges.end());
  edges.erase(std::unique(edges.begin(), edges.end()), edges.end());
  return edges;
}

}  // namespace ms
