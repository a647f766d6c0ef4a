// OpenMP launcher of first-passage segments: SIMD lanes with refill over small tasks of paths,
// handed out dynamically (segments have random lengths). Each path's noise is keyed by its own
// id and step, so the result does not depend on threads, lanes or scheduling.
#include "passage_cpu.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>
#include <stdexcept>
#include <vector>

#include "launch_cpu.h"
#include "multiscale/dispatch.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/view.h"

namespace ms::cpu {

namespace {

// Segments in W SIMD lanes with refill: the step (model + Philox + Box-Muller) runs as one
// vectorised loop over the lanes, [component][lane] as in the simulate launcher, each lane with
// its own path id and step counter; when a lane's segment ends, the next path of the chunk takes
// its place, so uneven segment lengths leave no lane idle until the chunk runs dry. The
// step is the header's passage_step, vectorised over the lanes; the decisions after it are the
// header's passage_decide, per lane (run_passage is the same loop for one path).
// Interruption: the calling thread (OpenMP thread 0) polls should_stop() a few times a second,
// from inside its own segments and, once out of work, while the others finish; every thread
// checks the flag between block steps. Unfinished paths keep OUTCOME_MAX_STEPS.
struct StopPoll {
  const PassageSpec& spec;
  std::atomic<bool>& stop;
  bool master;
  std::chrono::steady_clock::time_point last = std::chrono::steady_clock::now();
  bool operator()() {
    if (master && spec.should_stop && !stop.load(std::memory_order_relaxed)) {
      const auto now = std::chrono::steady_clock::now();
      if (now - last > std::chrono::milliseconds(100)) {
        last = now;
        if (spec.should_stop()) stop.store(true);
      }
    }
    return stop.load(std::memory_order_relaxed);
  }
};

template <bool ExactOU, bool Bridge, class M, int W>
void run_chunk(const M m, const StepCoef<double> k, const PhiloxKey key, const PassageSpec& spec,
               const PassageBuffers& out, int64_t i0, int64_t i1, Block<double, W>& B, StopPoll& poll) {
  using V = View<double, W>;
  const int nx = m.nx(), ny = m.ny(), dim = nx + ny;
  const double* w = spec.w.data();
  const PassageArgs base{w, spec.lo, spec.hi, INFINITY, spec.max_steps};  // the lanes' common part
  alignas(64) int64_t idx[W];
  alignas(64) uint32_t pid[W];
  alignas(64) uint64_t nst[W];
  alignas(64) int32_t ok[W];
  double xi[W], xmax[W];
  PassageArgs args[W];
  int64_t next = i0;
  auto store = [&](int l, int code) {
    const int64_t i = idx[l];
    double* st = out.state + i * dim;
    for (int c = 0; c < nx; ++c) st[c] = B.x[c * W + l];
    for (int c = 0; c < ny; ++c) st[nx + c] = B.y[c * W + l];
    out.outcome[i] = static_cast<int8_t>(code);
    out.steps[i] = static_cast<int64_t>(nst[l]);
    out.xi_max[i] = xmax[l];
    idx[l] = -1;
  };
  // Put the next path that needs to run into lane l; false when the chunk is exhausted.
  auto load = [&](int l) {
    while (next < i1) {
      const int64_t i = next++;
      const double* st = out.state + i * dim;
      for (int c = 0; c < nx; ++c) B.x[c * W + l] = st[c];
      for (int c = 0; c < ny; ++c) B.y[c * W + l] = st[nx + c];
      idx[l] = i;
      pid[l] = out.path_ids[i];
      nst[l] = 0;
      args[l] = PassageArgs{w, spec.lo, spec.hi, out.level[i], spec.max_steps};
      xi[l] = coordinate(w, V{B.x + l}, V{B.y + l}, nx, ny);
      xmax[l] = xi[l];
      const int r = passage_start(args[l], xi[l]);
      if (r < 0) return true;
      store(l, r);
    }
    return false;
  };
  int live = 0;
  for (int l = 0; l < W; ++l) {
    idx[l] = -1;
    pid[l] = 0;
    nst[l] = 0;
    live += load(l) ? 1 : 0;
  }
  alignas(64) double xi1[W];
  alignas(64) int32_t thi[W], tlo[W];
  int64_t iter = 0;
  while (live > 0) {
    if ((++iter & 1023) == 0 && poll()) {
      for (int l = 0; l < W; ++l)
        if (idx[l] >= 0) store(l, OUTCOME_MAX_STEPS);
      return;  // the chunk's unstarted paths keep their preset OUTCOME_MAX_STEPS
    }
    // One vectorised pass of the header's passage_step over the lanes: the step, the commit of
    // finite states, the coordinate and the bridge draws (empty lanes compute on their stale
    // state; nothing reads it). A block model (surrogate, one group) first evaluates its
    // coefficients for all lanes.
    if constexpr (block_eval_v<M>) {
      // An empty lane (its chunk ran dry) keeps stepping with one repeated normal and can drift
      // out of a surrogate's tables, which would put the whole block on the networks: it takes
      // a live lane's state instead.
      int src = -1;
      for (int l = 0; l < W && src < 0; ++l) src = idx[l] >= 0 ? l : -1;
      if (src >= 0)
        for (int l = 0; l < W; ++l)
          if (idx[l] < 0)
            for (int c = 0; c < nx; ++c) B.x[c * W + l] = B.x[c * W + src];
      m.template block_coefficients<W>(0, B.x, B.f, B.a, B.work.data());
    }
#pragma omp simd
    for (int l = 0; l < W; ++l) {
      const StepScratch<V> S{V{B.f + l}, V{B.f0 + l}, V{B.a + l}, V{B.g + l}, V{B.b + l}, V{B.z + l}};
      bool h, lo;
      const bool good = passage_step<ExactOU, Bridge>(m, k, V{B.x + l}, V{B.y + l}, V{B.xn + l}, V{B.yn + l}, S,
                                                      key, pid[l], nst[l], base, xi[l], xi1[l], h, lo);
      ok[l] = good ? 1 : 0;
      thi[l] = h ? 1 : 0;
      tlo[l] = lo ? 1 : 0;
    }
    for (int l = 0; l < W; ++l) {
      if (idx[l] < 0) continue;
      int r;
      if (!ok[l]) {
        r = OUTCOME_NONFINITE;  // the lane keeps its last finite state
      } else {
        ++nst[l];
        r = passage_decide(args[l], xi1[l], thi[l] != 0, tlo[l] != 0, static_cast<int64_t>(nst[l]), xmax[l]);
        xi[l] = xi1[l];
      }
      if (r >= 0) {
        store(l, r);
        if (!load(l)) --live;
      }
    }
  }
}

template <bool ExactOU, class M>
bool run_all(const M& m, const PassageSpec& spec, const PassageBuffers& out) {
  constexpr int W = lanes_for<M, double>();
  const StepCoef<double> k = make_step_coef<double>(m, spec.dt, spec.eps);
  const PhiloxKey key = PhiloxKey::from_seed(spec.seed);
  const int threads = spec.threads > 0 ? spec.threads : omp_get_max_threads();
  for (int64_t i = 0; i < spec.n_paths; ++i) {  // what an interrupted run leaves
    out.outcome[i] = OUTCOME_MAX_STEPS;
    out.steps[i] = 0;
    out.xi_max[i] = -INFINITY;
  }
  // Small tasks of paths (lanes refill within a task), handed out dynamically.
  const int64_t task = 8 * W;
  const int64_t ntasks = (spec.n_paths + task - 1) / task;
  std::atomic<int64_t> next{0};
  std::atomic<int> busy{0};
  std::atomic<bool> stop{false};
  const bool bridge = spec.bridge && model_noisy(m);
#pragma omp parallel num_threads(threads)
  {
    // The team the runtime gave, which can be smaller than asked for (OMP_DYNAMIC shrinks it on
    // a loaded machine, OMP_THREAD_LIMIT caps it): counting `threads` here left thread 0
    // waiting forever for threads that never existed. The barrier after `single` publishes it.
#pragma omp single
    busy.store(omp_get_num_threads());
    Block<double, W> B(m, 0);
    StopPoll poll{spec, stop, omp_get_thread_num() == 0};
    for (;;) {
      const int64_t t = next.fetch_add(1);
      if (t >= ntasks || poll()) break;
      const int64_t i0 = t * task, i1 = std::min(spec.n_paths, i0 + task);
      if (bridge)
        run_chunk<ExactOU, true, M, W>(m, k, key, spec, out, i0, i1, B, poll);
      else
        run_chunk<ExactOU, false, M, W>(m, k, key, spec, out, i0, i1, B, poll);
    }
    busy.fetch_sub(1);
    while (poll.master && busy.load() > 0 && !stop.load()) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      poll();
    }
  }
  return stop.load();
}

}  // namespace

bool passage(const PassageSpec& spec, const PassageBuffers& out) {
  bool stopped = false;
  const bool known = with_any_model<double>(spec.model_id, spec.params.data(), spec.eps, spec.surrogate,
                                            [&](const auto& m) {
    using M = std::decay_t<decltype(m)>;
    if constexpr (M::kOU) {
      stopped = spec.exact_ou ? run_all<true>(m, spec, out) : run_all<false>(m, spec, out);
    } else {
      stopped = run_all<false>(m, spec, out);
    }
  });
  if (!known) throw std::invalid_argument("unknown model id");
  return stopped;
}

}  // namespace ms::cpu
