// The only file that knows pybind11: checks arrays, releases the GIL around kernels, turns
// Ctrl-C into KeyboardInterrupt and C++ exceptions into Python ones. Argument validation with
// user-facing messages lives in the Python layer; the checks here guard memory safety.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <omp.h>

#include <sstream>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "../cpu/average_cpu.h"
#include "../cpu/jet_cpu.h"
#ifndef MS_USER_MODEL_HEADER  // a user model's JIT module leaves the ring surrogate out
#include "../cpu/local_surrogate_cpu.h"
#endif
#include "../cpu/passage_cpu.h"
#include "../cpu/simulate_cpu.h"
#include "../cuda/simulate_cuda.h"
#include "multiscale/dispatch.h"
#include "multiscale/elementary.h"
#include "multiscale/estimators/exact_sum.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/rng/normal.h"
#include "multiscale/rng/philox.h"
#include "multiscale/rng/streams.h"
#include "multiscale/status.h"
#include "multiscale/view.h"

namespace py = pybind11;

#ifndef MULTISCALE_VERSION
#define MULTISCALE_VERSION "0.0.0"
#endif

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;


// The tanh jet (surrogate/tanh_jet.h) on C-contiguous float32 or float64 arrays: a (rows, w),
// da (rows, m, w), d2a (rows, m, m, w) or None. Shapes and dtypes are checked here, so the kernel
// only sees consistent buffers.
struct JetShape {
  int64_t rows;
  int m, w;
};

JetShape jet_shape(const py::array& a, const py::array& da, const py::object& d2a) {
  if (a.ndim() < 1 || da.ndim() != a.ndim() + 1)
    throw std::invalid_argument("tanh_jet: a must be (..., w) and da (..., m, w)");
  const int nd = static_cast<int>(a.ndim());
  JetShape s{1, static_cast<int>(da.shape(nd - 1)), static_cast<int>(a.shape(nd - 1))};
  for (int i = 0; i < nd - 1; ++i) {
    if (da.shape(i) != a.shape(i)) throw std::invalid_argument("tanh_jet: a and da have different leading shapes");
    s.rows *= a.shape(i);
  }
  if (da.shape(nd) != s.w) throw std::invalid_argument("tanh_jet: a and da have different widths");
  if (s.m < 1 || s.w < 1) throw std::invalid_argument("tanh_jet: m and w must be positive");
  if (!d2a.is_none()) {
    const auto b = py::cast<py::array>(d2a);
    if (b.ndim() != nd + 2 || b.shape(nd - 1) != s.m || b.shape(nd) != s.m || b.shape(nd + 1) != s.w)
      throw std::invalid_argument("tanh_jet: d2a must be (..., m, m, w)");
    for (int i = 0; i < nd - 1; ++i)
      if (b.shape(i) != a.shape(i)) throw std::invalid_argument("tanh_jet: d2a has a different leading shape");
  }
  return s;
}

template <class Real>
const Real* jet_in(const py::object& x, const char* name) {
  if (x.is_none()) return nullptr;
  auto a = py::cast<py::array>(x);
  if (!py::isinstance<py::array_t<Real>>(a) || !(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string("tanh_jet: ") + name + " must be C-contiguous with the dtype of a");
  return static_cast<const Real*>(a.data());
}

template <class Real>
py::tuple tanh_jet_impl(const py::array& a, const py::array& da, const py::object& d2a, int threads) {
  const JetShape s = jet_shape(a, da, d2a);
  const Real* pa = jet_in<Real>(a, "a");
  const Real* pda = jet_in<Real>(da, "da");
  const Real* pd2a = jet_in<Real>(d2a, "d2a");
  std::vector<py::ssize_t> sh(a.shape(), a.shape() + a.ndim());
  py::array_t<Real> t(sh);
  sh.insert(sh.end() - 1, s.m);
  py::array_t<Real> dh(sh);
  sh.insert(sh.end() - 1, s.m);
  py::array_t<Real> d2h(sh);
  Real *pt = t.mutable_data(), *pdh = dh.mutable_data(), *pd2h = d2h.mutable_data();
  {
    py::gil_scoped_release release;
    ms::cpu::tanh_jet<Real>(s.rows, s.m, s.w, pa, pda, pd2a, pt, pdh, pd2h, threads);
  }
  return py::make_tuple(t, dh, d2h);
}

template <class Real>
py::tuple tanh_jet_backward_impl(const py::array& t, const py::array& da, const py::object& d2a,
                                 const py::array& gt, const py::array& gdh, const py::array& gd2h, int threads) {
  const JetShape s = jet_shape(t, da, d2a);
  jet_shape(gt, gdh, gd2h);
  if (gt.size() != t.size() || gdh.size() != da.size() || gd2h.size() != da.size() * s.m)
    throw std::invalid_argument("tanh_jet_backward: the cotangents do not match the forward's shapes");
  const Real *pt = jet_in<Real>(t, "t"), *pda = jet_in<Real>(da, "da"), *pd2a = jet_in<Real>(d2a, "d2a");
  const Real *pgt = jet_in<Real>(gt, "gt"), *pgdh = jet_in<Real>(gdh, "gdh"), *pgd2h = jet_in<Real>(gd2h, "gd2h");
  std::vector<py::ssize_t> sh(t.shape(), t.shape() + t.ndim());
  py::array_t<Real> ga(sh);
  sh.insert(sh.end() - 1, s.m);
  py::array_t<Real> gda(sh);
  sh.insert(sh.end() - 1, s.m);
  py::object gd2a = py::none();
  Real* pgd2a = nullptr;
  if (!d2a.is_none()) {
    py::array_t<Real> g(sh);
    pgd2a = g.mutable_data();
    gd2a = g;
  }
  Real *pga = ga.mutable_data(), *pgda = gda.mutable_data();
  {
    py::gil_scoped_release release;
    ms::cpu::tanh_jet_backward<Real>(s.rows, s.m, s.w, pt, pda, pd2a, pgt, pgdh, pgd2h, pga, pgda, pgd2a, threads);
  }
  return py::make_tuple(ga, gda, gd2a);
}

bool is_float32(const py::array& a) {
  if (py::isinstance<py::array_t<float>>(a)) return true;
  if (py::isinstance<py::array_t<double>>(a)) return false;
  throw std::invalid_argument("tanh_jet: arrays must be float32 or float64");
}

bool have_cuda() {
#ifdef MULTISCALE_HAVE_CUDA
  return true;
#else
  return false;
#endif
}

py::dict build_info() {
  py::dict d;
  d["version"] = MULTISCALE_VERSION;
#if defined(__clang__)
  d["compiler"] = std::string("clang ") + __clang_version__;
#elif defined(__GNUC__)
  d["compiler"] = std::string("gcc ") + __VERSION__;
#else
  d["compiler"] = "unknown";
#endif
  d["cxx_flags"] = MULTISCALE_CXX_FLAGS;
#ifdef _OPENMP
  d["openmp"] = static_cast<int>(_OPENMP);
#else
  d["openmp"] = py::none();
#endif
  d["max_threads"] = omp_get_max_threads();
  d["simd"] = ms::cpu::simd_level();
  d["lanes_float64"] = ms::cpu::lanes_float64();
  d["lanes_float32"] = ms::cpu::lanes_float32();
  d["cuda_compiled"] = have_cuda();
#ifdef MULTISCALE_HAVE_CUDA
  d["cuda_architectures"] = MULTISCALE_CUDA_ARCHS;
  d["cuda_runtime"] = ms::cuda::runtime_version();
  d["cuda_devices"] = ms::cuda::device_count();
  d["cuda_device_names"] = ms::cuda::device_summary();
#else
  d["cuda_architectures"] = "";
  d["cuda_runtime"] = py::none();
  d["cuda_devices"] = 0;
  d["cuda_device_names"] = "";
#endif
  d["rng"] = "Philox4x32-10, key splitmix64(seed), counter (block | stream<<24, path, step); Box-Muller normals";
  return d;
}

// Polled by the launchers between chunks (with the GIL released): true once Ctrl-C arrived.
// The Python exception stays set; the caller rethrows it after the kernel returns.
std::function<bool()> ctrl_c_poll(bool& signalled) {
  return [&signalled]() {
    py::gil_scoped_acquire gil;
    if (PyErr_CheckSignals() != 0) signalled = true;
    return signalled;
  };
}

// Runs cpu() on the CPU (device < 0) or gpu(device) on a CUDA device, with the GIL released, then
// rethrows a Ctrl-C that ctrl_c_poll recorded. `gpu` is a generic lambda, so builds without CUDA
// never instantiate it.
template <class Cpu, class Gpu>
auto on_device(int device, const bool& signalled, Cpu&& cpu, Gpu&& gpu) {
  using R = decltype(cpu());
  auto call = [&]() -> R {
    py::gil_scoped_release release;
    if (device < 0) return cpu();
#ifdef MULTISCALE_HAVE_CUDA
    return gpu(device);
#else
    (void)gpu;
    throw std::runtime_error("multiscale was built without CUDA kernels");
#endif
  };
  if constexpr (std::is_void_v<R>) {
    call();
    if (signalled) throw py::error_already_set();
  } else {
    R r = call();
    if (signalled) throw py::error_already_set();
    return r;
  }
}

template <class Real>
py::dict run_simulation(ms::RunSpec& spec, int dim, double eps, double dt, int64_t n_steps, uint64_t seed,
                        uint64_t path_offset, uint64_t step_offset, const py::array& x_init,
                        const CArray<int64_t>& save_steps, bool exact_ou, int threads,
                        const CArray<int32_t>& obs_vars, const CArray<double>& obs_shift,
                        const CArray<int64_t>& window_edges, int bins, const CArray<double>& lo,
                        const CArray<double>& hi, int device) {
  CArray<Real> x0 = CArray<Real>::ensure(x_init);
  if (!x0 || x0.ndim() != 2 || x0.shape(1) != dim)
    throw std::invalid_argument("initial state must have shape (n_paths, " + std::to_string(dim) + ")");
  const int64_t n = x0.shape(0);
  spec.n_paths = n;
  spec.path_offset = path_offset;
  spec.step_offset = step_offset;
  spec.seed = seed;
  spec.eps = eps;
  spec.dt = dt;
  spec.n_steps = n_steps;
  spec.save_steps.assign(save_steps.data(), save_steps.data() + save_steps.size());
  spec.exact_ou = exact_ou;
  spec.threads = threads;
  spec.obs.vars.assign(obs_vars.data(), obs_vars.data() + obs_vars.size());
  spec.obs.shift.assign(obs_shift.data(), obs_shift.data() + obs_shift.size());
  spec.obs.window_edges.assign(window_edges.data(), window_edges.data() + window_edges.size());
  spec.obs.bins = bins;
  spec.obs.lo.assign(lo.data(), lo.data() + lo.size());
  spec.obs.hi.assign(hi.data(), hi.data() + hi.size());
  for (int v : spec.obs.vars)
    if (v < 0 || v >= dim) throw std::invalid_argument("observable index out of range");
  if (spec.obs.vars.size() > 8) throw std::invalid_argument("at most 8 observables");
  if (spec.obs.shift.size() != spec.obs.vars.size()) throw std::invalid_argument("shift size");
  if (bins > 0 && (spec.obs.lo.size() != spec.obs.vars.size() || spec.obs.hi.size() != spec.obs.vars.size()))
    throw std::invalid_argument("histogram range size");
  for (size_t i = 0; i < spec.save_steps.size(); ++i)
    if (spec.save_steps[i] < 0 || spec.save_steps[i] > n_steps || (i && spec.save_steps[i] <= spec.save_steps[i - 1]))
      throw std::invalid_argument("save steps must be ascending within [0, n_steps]");
  if (n_steps < 0 || n <= 0) throw std::invalid_argument("n_steps >= 0 and n_paths > 0 required");
  if (path_offset + static_cast<uint64_t>(n) > (uint64_t(1) << 32))
    throw std::invalid_argument("global path index exceeds 2^32");
  if (step_offset >= (uint64_t(1) << 63) - static_cast<uint64_t>(n_steps))
    throw std::invalid_argument("global step index exceeds 2^63");

  const int nsave = static_cast<int>(spec.save_steps.size());
  const int nobs = spec.obs.n_obs(), nwin = spec.obs.n_windows();
  py::array_t<Real> state({n, static_cast<int64_t>(dim)});
  std::copy(x0.data(), x0.data() + x0.size(), state.mutable_data());
  py::array_t<Real> traj(std::vector<int64_t>{nsave ? n : 0, nsave, dim});
  py::array_t<int8_t> status(n);
  py::array_t<int64_t> fail_step(n);
  py::array_t<double> mean(std::vector<int64_t>{nwin, nobs});
  py::array_t<double> var(std::vector<int64_t>{nwin, nobs});
  py::array_t<int64_t> count(std::vector<int64_t>{nwin, nobs});
  py::array_t<int64_t> hist(std::vector<int64_t>{nwin, nobs, bins > 0 ? bins + 2 : 0});
  std::fill(hist.mutable_data(), hist.mutable_data() + hist.size(), 0);

  ms::RunBuffers<Real> out;
  out.state = state.mutable_data();
  out.traj = nsave ? traj.mutable_data() : nullptr;
  out.status = status.mutable_data();
  out.fail_step = fail_step.mutable_data();
  out.obs_mean = mean.mutable_data();
  out.obs_var = var.mutable_data();
  out.obs_count = count.mutable_data();
  out.hist = hist.mutable_data();

  bool signalled = false;
  spec.should_stop = ctrl_c_poll(signalled);

  const ms::RunResult r = on_device(
      device, signalled, [&] { return ms::cpu::simulate<Real>(spec, out); },
      [&](auto dev) { return ms::cuda::simulate<Real>(spec, out, dev); });

  py::dict d;
  d["final_state"] = state;
  d["trajectory"] = traj;
  d["status"] = status;
  d["fail_step"] = fail_step;
  d["obs_mean"] = mean;
  d["obs_var"] = var;
  d["obs_count"] = count;
  d["hist"] = hist;
  d["interrupted"] = r.interrupted;
  return d;
}

template <class Real>
py::dict simulate_impl(int model_id, const CArray<double>& params, double eps, double dt,
                       int64_t n_steps, uint64_t seed, uint64_t path_offset, uint64_t step_offset,
                       const py::array& x_init, const CArray<int64_t>& save_steps, bool exact_ou,
                       int threads, const CArray<int32_t>& obs_vars,
                       const CArray<double>& obs_shift, const CArray<int64_t>& window_edges,
                       int bins, const CArray<double>& lo, const CArray<double>& hi, int device) {
  ms::RunSpec spec;
  spec.model_id = model_id;
  spec.params.assign(params.data(), params.data() + params.size());
  const auto dims = ms::model_dims(model_id, spec.params.data(), eps);
  if (dims.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
  return run_simulation<Real>(spec, dims.first + dims.second, eps, dt, n_steps, seed, path_offset, step_offset,
                              x_init, save_steps, exact_ou, threads, obs_vars, obs_shift, window_edges, bins, lo,
                              hi, device);
}

// A learned surrogate's description and arrays, checked against each other.
ms::SurrogateArrays surrogate_arrays(int dim, int members, int form, bool gradient, int member,
                                     const CArray<int32_t>& hidden, const CArray<double>& params,
                                     const CArray<double>& tables, int64_t n_grid, double t_lo, double t_h) {
  ms::SurrogateArrays a;
  ms::SurrogateSpec& s = a.spec;
  if (hidden.size() < 1 || hidden.size() >= ms::nn::kMaxLayers)
    throw std::invalid_argument("surrogate: hidden must list 1 to " + std::to_string(ms::nn::kMaxLayers - 1) +
                                " layer widths");
  s.dim = dim;
  s.members = members;
  s.form = form;
  s.gradient = gradient ? 1 : 0;
  s.member = member;
  s.n_hidden = static_cast<int>(hidden.size());
  for (int l = 0; l < s.n_hidden; ++l) {
    if (hidden.data()[l] < 1) throw std::invalid_argument("surrogate: hidden widths must be positive");
    s.hidden[l] = hidden.data()[l];
  }
  s.n_grid = n_grid;
  s.t_lo = t_lo;
  s.t_h = t_h;
  bool valid = false;
  const auto m = ms::SurrogateModel<double>::make(s, valid);
  if (!valid)
    throw std::invalid_argument("surrogate: inconsistent description (dim " + std::to_string(dim) + ", members " +
                                std::to_string(members) + ", form " + std::to_string(form) + ", member " +
                                std::to_string(member) + ", table points " + std::to_string(n_grid) + ")");
  if (params.size() != m.n_params)
    throw std::invalid_argument("surrogate: " + std::to_string(params.size()) + " parameters; the architecture has " +
                                std::to_string(m.n_params));
  const int64_t n_tab = n_grid * 4 * m.n_groups();
  if (tables.size() != n_tab)
    throw std::invalid_argument("surrogate: " + std::to_string(tables.size()) + " table entries; expected " +
                                std::to_string(n_tab));
  if (!(std::isfinite(t_lo) && std::isfinite(t_h)))
    throw std::invalid_argument("surrogate: table origin and spacing must be finite");
  a.params.assign(params.data(), params.data() + params.size());
  a.tables.assign(tables.data(), tables.data() + tables.size());
  return a;
}

template <class Real>
py::dict simulate_surrogate_impl(int dim, int members, int form, bool gradient, int member,
                                 const CArray<int32_t>& hidden, const CArray<double>& params,
                                 const CArray<double>& tables, int64_t n_grid, double t_lo, double t_h, double dt,
                                 int64_t n_steps, uint64_t seed, uint64_t path_offset, uint64_t step_offset,
                                 const py::array& x_init, const CArray<int64_t>& save_steps, int threads,
                                 const CArray<int32_t>& obs_vars, const CArray<double>& obs_shift,
                                 const CArray<int64_t>& window_edges, int bins, const CArray<double>& lo,
                                 const CArray<double>& hi, int noise_substeps, int device) {
  ms::RunSpec spec;
  spec.model_id = ms::kSurrogateModel;
  if (noise_substeps < 1) throw std::invalid_argument("noise_substeps must be >= 1");
  spec.noise_substeps = noise_substeps;
  spec.surrogate = surrogate_arrays(dim, members, form, gradient, member, hidden, params, tables, n_grid, t_lo, t_h);
  return run_simulation<Real>(spec, dim, 1.0, dt, n_steps, seed, path_offset, step_offset, x_init, save_steps, false,
                              threads, obs_vars, obs_shift, window_edges, bins, lo, hi, device);
}


// In/out arrays of the frozen-x kernels are updated in place: they must already have the exact
// dtype, C order and shape (the Python layer allocates them).
template <class T>
T* inout(py::array& a, const std::vector<py::ssize_t>& shape, const char* name) {
  if (!py::isinstance<py::array_t<T>>(a) || !(a.flags() & py::array::c_style) || !a.writeable())
    throw std::invalid_argument(std::string(name) + ": wrong dtype, layout or not writeable");
  if (a.ndim() != static_cast<py::ssize_t>(shape.size()))
    throw std::invalid_argument(std::string(name) + ": wrong number of dimensions");
  for (size_t i = 0; i < shape.size(); ++i)
    if (a.shape(i) != shape[i]) throw std::invalid_argument(std::string(name) + ": wrong shape");
  return static_cast<T*>(a.mutable_data());
}

template <class Real>
void frozen_impl(int model_id, const CArray<double>& params, double eps, const CArray<double>& x_points,
                 const CArray<uint8_t>& active, int64_t replicas, uint64_t seed, double dtau,
                 int64_t burn_steps, int64_t burn_total, int64_t steps, int64_t batch_len, bool exact_ou,
                 bool corrector, double fd_step, int threads, py::array ystate, py::array acc,
                 py::array steps_done, py::array status, py::array fail_step, int device) {
  ms::FrozenSpec spec;
  spec.model_id = model_id;
  spec.params.assign(params.data(), params.data() + params.size());
  spec.eps = eps;
  const auto dims = ms::model_dims(model_id, spec.params.data(), eps);
  if (dims.first < 0) throw std::invalid_argument("unknown model id");
  if (x_points.ndim() != 2 || x_points.shape(1) != dims.first)
    throw std::invalid_argument("x_points must have shape (n_points, nx)");
  const int64_t M = x_points.shape(0);
  if (active.size() != M || replicas <= 0 || batch_len <= 0 || steps % batch_len != 0 || burn_steps < 0 ||
      steps < 0 || !(dtau > 0))
    throw std::invalid_argument("inconsistent frozen-average arguments");
  spec.n_points = M;
  spec.replicas = replicas;
  spec.x_points.assign(x_points.data(), x_points.data() + x_points.size());
  spec.active.assign(active.data(), active.data() + active.size());
  spec.seed = seed;
  spec.dtau = dtau;
  spec.burn_steps = burn_steps;
  spec.burn_total = burn_total;
  spec.steps = steps;
  spec.batch_len = batch_len;
  spec.exact_ou = exact_ou;
  spec.corrector = corrector;
  spec.fd_step = fd_step;
  spec.threads = threads;
  const auto sizes = ms::cpu::frozen_sizes(model_id, spec.params.data(), eps, corrector);
  const py::ssize_t n = M * replicas;
  ms::FrozenBuffers<Real> out;
  out.ystate = inout<Real>(ystate, {n, sizes.second}, "ystate");
  out.acc = inout<double>(acc, {n, sizes.first}, "acc");
  out.steps_done = inout<int64_t>(steps_done, {n}, "steps_done");
  out.status = inout<int8_t>(status, {n}, "status");
  out.fail_step = inout<int64_t>(fail_step, {n}, "fail_step");
  bool signalled = false;
  spec.should_stop = ctrl_c_poll(signalled);
  on_device(
      device, signalled, [&] { ms::cpu::frozen_average<Real>(spec, out); },
      [&](auto dev) { ms::cuda::frozen_average<Real>(spec, out, dev); });
}

}  // namespace

py::dict run_passage_impl(ms::PassageSpec& spec, int dim, double dt, bool exact_ou, uint64_t seed, py::array state,
                          const CArray<uint32_t>& path_ids, const CArray<double>& levels, const CArray<double>& w,
                          double lo, double hi, int64_t max_steps, bool bridge, int threads, int device) {
  const py::ssize_t n = path_ids.size();
  if (levels.size() != n || w.size() != dim || max_steps < 0 || !(dt > 0) || !(lo < hi))
    throw std::invalid_argument("inconsistent first-passage arguments");
  spec.dt = dt;
  spec.exact_ou = exact_ou;
  spec.seed = seed;
  spec.n_paths = n;
  spec.w.assign(w.data(), w.data() + w.size());
  spec.lo = lo;
  spec.hi = hi;
  spec.max_steps = max_steps;
  spec.bridge = bridge;
  spec.threads = threads;
  py::array_t<int8_t> outcome(n);
  py::array_t<int64_t> steps(n);
  py::array_t<double> xi_max(n);
  ms::PassageBuffers out;
  out.state = inout<double>(state, {n, dim}, "state");
  out.path_ids = path_ids.data();
  out.level = levels.data();
  out.outcome = outcome.mutable_data();
  out.steps = steps.mutable_data();
  out.xi_max = xi_max.mutable_data();
  bool signalled = false;
  spec.should_stop = ctrl_c_poll(signalled);
  on_device(
      device, signalled, [&] { ms::cpu::passage(spec, out); }, [&](auto dev) { ms::cuda::passage(spec, out, dev); });
  py::dict d;
  d["outcome"] = outcome;
  d["steps"] = steps;
  d["xi_max"] = xi_max;
  return d;
}

// First-passage segments; `state` (n, dim) float64 is updated in place to the final states.
py::dict passage_impl(int model_id, const CArray<double>& params, double eps, double dt, bool exact_ou,
                      uint64_t seed, py::array state, const CArray<uint32_t>& path_ids,
                      const CArray<double>& levels, const CArray<double>& w, double lo, double hi,
                      int64_t max_steps, bool bridge, int threads, int device) {
  ms::PassageSpec spec;
  spec.model_id = model_id;
  spec.params.assign(params.data(), params.data() + params.size());
  spec.eps = eps;
  const auto dims = ms::model_dims(model_id, spec.params.data(), eps);
  if (dims.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
  return run_passage_impl(spec, dims.first + dims.second, dt, exact_ou, seed, state, path_ids, levels, w, lo, hi,
                          max_steps, bridge, threads, device);
}


// First-passage segments of a learned surrogate (ensemble mean or one member).
py::dict passage_surrogate_impl(int dim, int members, int form, bool gradient, int member,
                                const CArray<int32_t>& hidden, const CArray<double>& params,
                                const CArray<double>& tables, int64_t n_grid, double t_lo, double t_h, double dt,
                                uint64_t seed, py::array state, const CArray<uint32_t>& path_ids,
                                const CArray<double>& levels, const CArray<double>& w, double lo, double hi,
                                int64_t max_steps, bool bridge, int threads, int device) {
  if (member == ms::kMemberSample)
    throw std::invalid_argument("surrogate first passage: member must be the mean or one member");
  ms::PassageSpec spec;
  spec.model_id = ms::kSurrogateModel;
  spec.surrogate = surrogate_arrays(dim, members, form, gradient, member, hidden, params, tables, n_grid, t_lo, t_h);
  return run_passage_impl(spec, dim, dt, false, seed, state, path_ids, levels, w, lo, hi, max_steps, bridge, threads,
                          device);
}

namespace {

// A registry's table (status.h, rng/streams.h) as a dict name -> code.
int code_of(const ms::CodeName& e) { return e.code; }
int code_of(const ms::StreamName& e) { return static_cast<int>(e.id); }
template <class T, size_t N>
py::dict code_table(const T (&table)[N]) {
  py::dict d;
  for (const T& e : table) d[e.name] = code_of(e);
  return d;
}

}  // namespace

#ifndef MS_USER_MODEL_HEADER
namespace {

// The hybrid ring surrogate (models/local_surrogate.h): description and arrays checked here, then
// the generic CPU launcher with the GIL released. resolved_fn: the address of a just-in-time
// ResolvedBlockFn<Real> for the launcher's lanes (0: R = 0); the Python layer owns that library.
template <class Real>
py::dict simulate_local_impl(int sites, int stencil, int members, int member, const CArray<int32_t>& hidden,
                             const CArray<double>& params, uint64_t resolved_fn, const CArray<double>& resolved_params,
                             double dt, int64_t n_steps, uint64_t seed, uint64_t path_offset, uint64_t step_offset,
                             const py::array& x_init, const CArray<int64_t>& save_steps, int threads) {
  ms::cpu::LocalSurrogateArrays a;
  ms::LocalSurrogateSpec& s = a.spec;
  if (hidden.size() < 1 || hidden.size() >= ms::nn::kMaxLayers)
    throw std::invalid_argument("local surrogate: hidden must list 1 to " + std::to_string(ms::nn::kMaxLayers - 1) +
                                " layer widths");
  s.sites = sites;
  s.stencil = stencil;
  s.members = members;
  s.member = member;
  s.n_hidden = static_cast<int>(hidden.size());
  for (int l = 0; l < s.n_hidden; ++l) s.hidden[l] = hidden.data()[l];
  bool valid = false;
  const int64_t n_params = ms::cpu::local_surrogate_n_params(s, valid);
  if (!valid)
    throw std::invalid_argument("local surrogate: inconsistent description (sites " + std::to_string(sites) +
                                ", stencil " + std::to_string(stencil) + ", members " + std::to_string(members) +
                                ", member " + std::to_string(member) + ")");
  if (params.size() != n_params)
    throw std::invalid_argument("local surrogate: " + std::to_string(params.size()) +
                                " parameters; the architecture has " + std::to_string(n_params));
  if (!(dt > 0)) throw std::invalid_argument("local surrogate: dt must be positive");
  a.params.assign(params.data(), params.data() + params.size());
  a.resolved_fn = static_cast<std::uintptr_t>(resolved_fn);
  a.resolved_params.assign(resolved_params.data(), resolved_params.data() + resolved_params.size());
  ms::RunSpec spec;
  CArray<Real> x0 = CArray<Real>::ensure(x_init);
  if (!x0 || x0.ndim() != 2 || x0.shape(1) != sites)
    throw std::invalid_argument("initial state must have shape (n_paths, " + std::to_string(sites) + ")");
  const int64_t n = x0.shape(0);
  if (n_steps < 0 || n <= 0) throw std::invalid_argument("n_steps >= 0 and n_paths > 0 required");
  if (path_offset + static_cast<uint64_t>(n) > (uint64_t(1) << 32))
    throw std::invalid_argument("global path index exceeds 2^32");
  if (step_offset >= (uint64_t(1) << 63) - static_cast<uint64_t>(n_steps))
    throw std::invalid_argument("global step index exceeds 2^63");
  spec.n_paths = n;
  spec.path_offset = path_offset;
  spec.step_offset = step_offset;
  spec.seed = seed;
  spec.dt = dt;
  spec.n_steps = n_steps;
  spec.threads = threads;
  spec.save_steps.assign(save_steps.data(), save_steps.data() + save_steps.size());
  for (size_t i = 0; i < spec.save_steps.size(); ++i)
    if (spec.save_steps[i] < 0 || spec.save_steps[i] > n_steps || (i && spec.save_steps[i] <= spec.save_steps[i - 1]))
      throw std::invalid_argument("save steps must be ascending within [0, n_steps]");
  const int nsave = static_cast<int>(spec.save_steps.size());
  py::array_t<Real> state({n, static_cast<int64_t>(sites)});
  std::copy(x0.data(), x0.data() + x0.size(), state.mutable_data());
  py::array_t<Real> traj(std::vector<int64_t>{nsave ? n : 0, nsave, sites});
  py::array_t<int8_t> status(n);
  py::array_t<int64_t> fail_step(n);
  ms::RunBuffers<Real> out;
  out.state = state.mutable_data();
  out.traj = nsave ? traj.mutable_data() : nullptr;
  out.status = status.mutable_data();
  out.fail_step = fail_step.mutable_data();
  bool signalled = false;
  spec.should_stop = ctrl_c_poll(signalled);
  const ms::RunResult r = on_device(
      -1, signalled, [&] { return ms::cpu::simulate_local<Real>(spec, a, out); },
      [&](auto) { return ms::RunResult{}; });
  py::dict d;
  d["final_state"] = state;
  d["trajectory"] = traj;
  d["status"] = status;
  d["fail_step"] = fail_step;
  d["interrupted"] = r.interrupted;
  return d;
}

}  // namespace
#endif

// A just-in-time build of a user model names its module (see multiscale/models/_jit.py).
#ifndef MS_MODULE_NAME
#define MS_MODULE_NAME _core
#endif
PYBIND11_MODULE(MS_MODULE_NAME, m) {
  m.doc() = R"doc(multiscale compiled kernels (internal; use the multiscale package API).

Every kernel is keyed by a catalogue model id (multiscale.models) and its parameter vector
(float64, in the order of ModelInfo.param_names). State arrays hold the slow components first,
then the fast ones (dim = nx + ny). ``threads`` <= 0 uses the OpenMP default; ``device`` < 0 runs
on the CPU, k >= 0 on CUDA device k. Per-path codes: status_codes(), outcome_codes() (mirrored
in multiscale/_status.py); Philox streams: streams() (multiscale/_streams.py). Kernels do not
raise for diverging paths: they report per-path codes. Ctrl-C raises KeyboardInterrupt after
the kernel stops; invalid arguments raise ValueError.)doc";

  m.def("build_info", &build_info, R"doc(How this module was built and what it can use.

Returns a dict: version, compiler, cxx_flags, openmp (the _OPENMP date or None), max_threads,
simd (instruction set of the CPU kernels), lanes_float64 / lanes_float32 (paths per SIMD block),
cuda_compiled, cuda_architectures (comma-separated, "" without CUDA), cuda_runtime (str or None),
cuda_devices (int), cuda_device_names (";"-separated), rng (the counter layout).)doc");

  m.def("status_codes", [] { return code_table(ms::kStatusCodes); },
        R"doc(The per-path status codes of simulate_* and frozen_average_float64 (status.h), as a
dict name -> code, e.g. {"OK": 0, "NONFINITE": 1, ...}.)doc");

  m.def("outcome_codes", [] { return code_table(ms::kOutcomeCodes); },
        R"doc(The first-passage outcome codes of passage() (status.h), as a dict name -> code,
e.g. {"LO": 0, "HI": 1, ...}.)doc");

  m.def("streams", [] { return code_table(ms::kStreams); },
        R"doc(The Philox stream ids (rng/streams.h), as a dict name -> id, e.g. {"DYNAMICS": 0, ...}.)doc");

  m.def(
      "model_dims",
      [](int model_id, const CArray<double>& params, double eps) {
        auto d = ms::model_dims(model_id, params.data(), eps);
        if (d.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
        return d;
      },
      py::arg("model_id"), py::arg("params"), py::arg("eps"),
      R"doc(State dimensions (nx, ny) of a catalogue model.

model_id: catalogue id; params: (n_params,) float64; eps: scale separation (the model is built
from params and eps). Returns (nx, ny): slow and fast dimensions.)doc");

  m.def(
      "model_coefficients",
      [](int model_id, const CArray<double>& params, double eps, const CArray<double>& x,
         const CArray<double>& y) {
        auto d = ms::model_dims(model_id, params.data(), eps);
        if (d.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
        if (x.ndim() != 2 || x.shape(1) != d.first) throw std::invalid_argument("x must have shape (n, nx)");
        const py::ssize_t n = x.shape(0);
        if (y.ndim() != 2 || y.shape(0) != n || y.shape(1) != d.second)
          throw std::invalid_argument("y must have shape (n, ny)");
        py::array_t<double> f({n, static_cast<py::ssize_t>(d.first)}), f0({n, static_cast<py::ssize_t>(d.first)}),
            a({n, static_cast<py::ssize_t>(d.first)}), g({n, static_cast<py::ssize_t>(d.second)}),
            b({n, static_cast<py::ssize_t>(d.second)});
        {
          py::gil_scoped_release release;
          ms::model_coefficients(model_id, params.data(), eps, n, x.data(), y.data(), f.mutable_data(),
                                 f0.mutable_data(), a.mutable_data(), g.mutable_data(), b.mutable_data());
        }
        py::dict out;
        out["f"] = f;
        out["f0"] = f0;
        out["a"] = a;
        out["g"] = g;
        out["b"] = b;
        return out;
      },
      py::arg("model_id"), py::arg("params"), py::arg("eps"), py::arg("x"), py::arg("y"),
      R"doc(The model's coefficient functions at n state pairs (x_k, y_k).

x: (n, nx) float64, y: (n, ny) float64. Returns a dict of float64 arrays, unscaled (the 1/eps
factors of the scaling not applied): f (n, nx) slow drift (f1 under homogenization), f0 (n, nx)
the 1/eps part of a homogenization drift (zeros otherwise), a (n, nx) diagonal slow noise alpha,
g (n, ny) fast drift, b (n, ny) diagonal fast noise beta.)doc");

  static const char* simulate_doc = R"doc(Euler-Maruyama ensemble of the full fast/slow SDE.

model_id, params (n_params,) float64, eps; dt: time step (model time); n_steps: steps to take;
seed: Philox seed; path_offset, step_offset: global index of the first path and step (the noise
of path p at step s is keyed by (seed, path_offset + p, step_offset + s), so chunked and
continued runs reproduce one long run); x_init: (n_paths, dim) initial states in the kernel's
precision (float64 for simulate_float64, float32 for simulate_float32); save_steps: (n_save,)
int64, ascending steps in [0, n_steps] whose states are stored; exact_ou: exact Ornstein-
Uhlenbeck fast step where the model allows it; threads; obs_vars: (n_obs,) int32 state indices
of the streaming observables (at most 8); obs_shift: (n_obs,) float64 subtracted before summing;
window_edges: (n_windows + 1,) int64 ascending steps, window w = steps (edges[w], edges[w+1]];
bins: histogram bins per observable (0: none); lo, hi: (n_obs,) float64 histogram ranges;
device.

Returns a dict: final_state (n_paths, dim) (last finite state of a failed path), trajectory
(n_paths, n_save, dim) (NaN after a path failed; (0, 0, dim) without saves), status (n_paths,)
int8 status codes (status_codes()), fail_step (n_paths,) int64 (step of failure, -1),
obs_mean / obs_var (n_windows, n_obs) float64, obs_count (n_windows, n_obs) int64, hist
(n_windows, n_obs, bins + 2) int64 (underflow, bins, overflow), interrupted (bool).)doc";
  m.def("simulate_float64", &simulate_impl<double>, py::arg("model_id"), py::arg("params"), py::arg("eps"),
        py::arg("dt"), py::arg("n_steps"), py::arg("seed"), py::arg("path_offset"), py::arg("step_offset"),
        py::arg("x_init"), py::arg("save_steps"), py::arg("exact_ou"), py::arg("threads"), py::arg("obs_vars"),
        py::arg("obs_shift"), py::arg("window_edges"), py::arg("bins"), py::arg("lo"), py::arg("hi"),
        py::arg("device"), simulate_doc);
  m.def("simulate_float32", &simulate_impl<float>, py::arg("model_id"), py::arg("params"), py::arg("eps"),
        py::arg("dt"), py::arg("n_steps"), py::arg("seed"), py::arg("path_offset"), py::arg("step_offset"),
        py::arg("x_init"), py::arg("save_steps"), py::arg("exact_ou"), py::arg("threads"), py::arg("obs_vars"),
        py::arg("obs_shift"), py::arg("window_edges"), py::arg("bins"), py::arg("lo"), py::arg("hi"),
        py::arg("device"), simulate_doc);

  static const char* surrogate_doc = R"doc(Euler-Maruyama ensemble of a learned effective SDE
dX = b(X) dt + S(X) dW in the compiled kernels (models/surrogate.h), with the semantics and
results of simulate_float64 (state dimension dim, no fast variables, noise on the SURROGATE
stream).

Surrogate: dim, members, form (0 cholesky, 1 diagonal, 2 scalar), gradient, member (k >= 0; -1
the ensemble mean; -2 path p follows member p mod members), hidden (n_hidden,) int32 widths,
params: the flat float64 parameters in portable-format order, tables: [groups][n_grid][4]
float64 cubic Hermite tables (b, b', s, s') on the grid t_lo + k t_h, or empty with n_grid 0.
noise_substeps: step s draws the Brownian increment of steps s*k .. s*k+k-1 of a run with step
dt/k (the step-size check).)doc";
  m.def("simulate_surrogate_float64", &simulate_surrogate_impl<double>, py::arg("dim"), py::arg("members"),
        py::arg("form"), py::arg("gradient"), py::arg("member"), py::arg("hidden"), py::arg("params"),
        py::arg("tables"), py::arg("n_grid"), py::arg("t_lo"), py::arg("t_h"), py::arg("dt"), py::arg("n_steps"),
        py::arg("seed"), py::arg("path_offset"), py::arg("step_offset"), py::arg("x_init"), py::arg("save_steps"),
        py::arg("threads"), py::arg("obs_vars"), py::arg("obs_shift"), py::arg("window_edges"), py::arg("bins"),
        py::arg("lo"), py::arg("hi"), py::arg("noise_substeps"), py::arg("device"), surrogate_doc);
  m.def("simulate_surrogate_float32", &simulate_surrogate_impl<float>, py::arg("dim"), py::arg("members"),
        py::arg("form"), py::arg("gradient"), py::arg("member"), py::arg("hidden"), py::arg("params"),
        py::arg("tables"), py::arg("n_grid"), py::arg("t_lo"), py::arg("t_h"), py::arg("dt"), py::arg("n_steps"),
        py::arg("seed"), py::arg("path_offset"), py::arg("step_offset"), py::arg("x_init"), py::arg("save_steps"),
        py::arg("threads"), py::arg("obs_vars"), py::arg("obs_shift"), py::arg("window_edges"), py::arg("bins"),
        py::arg("lo"), py::arg("hi"), py::arg("noise_substeps"), py::arg("device"), surrogate_doc);
#ifndef MS_USER_MODEL_HEADER
  static const char* local_doc = R"doc(Euler-Maruyama ensemble of a hybrid local ring surrogate
dX = [R(X) + U(X)] dt + S(X) dW (models/local_surrogate.h; multiscale.surrogate.LocalEffectiveSDE),
with the semantics of simulate_float64 (no observables; state dimension sites; noise on the
SURROGATE stream, normal index = site).

sites, stencil, members, member (k >= 0; -1 the ensemble mean; -2 path p follows member
p mod members), hidden (n_hidden,) int32 widths, params: drift net, diffusion net (portable
order), then x_mean, x_scale, u_mean, u_scale, s_scale (float64); resolved_fn: address of the
just-in-time block function of R for local_lanes(dtype) lanes (0: R = 0), resolved_params: its
parameter vector. Returns final_state, trajectory, status, fail_step, interrupted.)doc";
  m.def("simulate_local_float64", &simulate_local_impl<double>, py::arg("sites"), py::arg("stencil"),
        py::arg("members"), py::arg("member"), py::arg("hidden"), py::arg("params"), py::arg("resolved_fn"),
        py::arg("resolved_params"), py::arg("dt"), py::arg("n_steps"), py::arg("seed"), py::arg("path_offset"),
        py::arg("step_offset"), py::arg("x_init"), py::arg("save_steps"), py::arg("threads"), local_doc);
  m.def("simulate_local_float32", &simulate_local_impl<float>, py::arg("sites"), py::arg("stencil"),
        py::arg("members"), py::arg("member"), py::arg("hidden"), py::arg("params"), py::arg("resolved_fn"),
        py::arg("resolved_params"), py::arg("dt"), py::arg("n_steps"), py::arg("seed"), py::arg("path_offset"),
        py::arg("step_offset"), py::arg("x_init"), py::arg("save_steps"), py::arg("threads"), local_doc);
  m.def("local_lanes", [](const std::string& dtype) {
    if (dtype == "float64") return ms::cpu::local_lanes_float64();
    if (dtype == "float32") return ms::cpu::local_lanes_float32();
    throw std::invalid_argument("dtype must be 'float64' or 'float32'");
  }, py::arg("dtype"), "Paths per block of the ring surrogate's launcher: the lanes of its resolved block function.");
#endif
  m.def("passage_surrogate", &passage_surrogate_impl, py::arg("dim"), py::arg("members"), py::arg("form"),
        py::arg("gradient"), py::arg("member"), py::arg("hidden"), py::arg("params"), py::arg("tables"),
        py::arg("n_grid"), py::arg("t_lo"), py::arg("t_h"), py::arg("dt"), py::arg("seed"), py::arg("state"),
        py::arg("path_ids"), py::arg("levels"), py::arg("w"), py::arg("lo"), py::arg("hi"), py::arg("max_steps"),
        py::arg("bridge"), py::arg("threads"), py::arg("device"),
        R"doc(First-passage segments of a learned surrogate (the arguments of simulate_surrogate_float64
for the model, member the mean (-1) or one member; the rest as passage). Noise on the SURROGATE
stream.)doc");

  m.def("frozen_average_float64", &frozen_impl<double>, py::arg("model_id"), py::arg("params"), py::arg("eps"),
        py::arg("x_points"), py::arg("active"), py::arg("replicas"), py::arg("seed"), py::arg("dtau"),
        py::arg("burn_steps"), py::arg("burn_total"), py::arg("steps"), py::arg("batch_len"), py::arg("exact_ou"),
        py::arg("corrector"), py::arg("fd_step"), py::arg("threads"), py::arg("ystate"), py::arg("acc"),
        py::arg("steps_done"), py::arg("status"), py::arg("fail_step"), py::arg("device"),
        R"doc(Frozen-x averaging (the HMM micro-solver, estimators/frozen_average.h): advance the
fast process with x held at each point and accumulate its time averages in place.

Paths are (point, replica) pairs, path = point * replicas + replica, n = n_points * replicas.
model_id, params (n_params,) float64, eps; x_points: (n_points, nx) float64; active:
(n_points,) uint8, 1 = run this point in this call; replicas; seed; dtau: fast-time step;
burn_steps: steps run before accumulating in this call (the first round only); burn_total: the
run's burn-in length (the noise step offset of accumulation); steps: accumulation steps this
call, a multiple of batch_len; batch_len: steps per batch; exact_ou; corrector: also estimate the
homogenization corrector drift; fd_step: its finite-difference step; threads.
In/out, exact dtype, C order and shape (sizes from frozen_sizes()): ystate (n, state_size) float64
fast states; acc (n, acc_size) float64 accumulators; steps_done (n,) int64 accumulated steps;
status (n,) int8 status codes (status_codes()); fail_step (n,) int64. device. Returns None.)doc");

  m.def(
      "frozen_sizes",
      [](int model_id, const CArray<double>& params, double eps, bool corrector) {
        auto r = ms::cpu::frozen_sizes(model_id, params.data(), eps, corrector);
        if (r.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
        return r;
      },
      py::arg("model_id"), py::arg("params"), py::arg("eps"), py::arg("corrector"),
      R"doc(Per-path buffer sizes of frozen_average_float64: returns (acc_size, state_size), the
float64 accumulators and fast-state entries (ny, times 1 + 2 nx shadows with the corrector).)doc");

  m.def("passage", &passage_impl, py::arg("model_id"), py::arg("params"), py::arg("eps"), py::arg("dt"),
        py::arg("exact_ou"), py::arg("seed"), py::arg("state"), py::arg("path_ids"), py::arg("levels"),
        py::arg("w"), py::arg("lo"), py::arg("hi"), py::arg("max_steps"), py::arg("bridge"), py::arg("threads"),
        py::arg("device"),
        R"doc(First-passage segments of the full SDE (estimators/first_passage.h): run each path
until its reaction coordinate xi = w . (x, y) leaves (lo, hi), exceeds its level, or max_steps
pass.

model_id, params (n_params,) float64, eps, dt, exact_ou, seed; state: (n, dim) float64, C order,
writeable: start states in, final states out (in place); path_ids: (n,) uint32, path i draws the
noise of (seed, path_ids[i], step), step counted from 0 in each call; levels: (n,) float64, stop
once xi > levels[i] (+inf: never); w: (dim,) float64 weights; lo, hi: absorbing levels (-inf /
+inf: none); max_steps: step budget per path; bridge: Brownian-bridge crossing test between
steps; threads; device.

Returns a dict: outcome (n,) int8 outcome codes (outcome_codes(); unfinished paths of an
interrupted run report MAX_STEPS), steps (n,) int64 steps taken, xi_max (n,) float64 the largest
xi at the step ends (start included).)doc");

  // Taylor-mode jet of tanh for the trajectory trainer's second-order moments.
  m.def(
      "tanh_jet",
      [](const py::array& a, const py::array& da, const py::object& d2a, int threads) {
        return is_float32(a) ? tanh_jet_impl<float>(a, da, d2a, threads)
                             : tanh_jet_impl<double>(a, da, d2a, threads);
      },
      py::arg("a"), py::arg("da"), py::arg("d2a"), py::arg("threads") = 1,
      R"doc(Value and first and second derivatives of h = tanh(a) along m directions
(surrogate/tanh_jet.h): a (..., w), da (..., m, w), d2a (..., m, m, w) or None (zero), all
C-contiguous float32 or float64 of one dtype. Returns (t, dh, d2h) of the shapes of (a, da, d2a):
t = tanh(a), dh_k = s da_k, d2h_kl = s d2a_kl - 2 t s da_k da_l with s = 1 - t^2. Rows split over
threads; the numbers do not depend on it.)doc");
  m.def(
      "tanh_jet_backward",
      [](const py::array& t, const py::array& da, const py::object& d2a, const py::array& gt,
         const py::array& gdh, const py::array& gd2h, int threads) {
        return is_float32(t) ? tanh_jet_backward_impl<float>(t, da, d2a, gt, gdh, gd2h, threads)
                             : tanh_jet_backward_impl<double>(t, da, d2a, gt, gdh, gd2h, threads);
      },
      py::arg("t"), py::arg("da"), py::arg("d2a"), py::arg("gt"), py::arg("gdh"), py::arg("gd2h"),
      py::arg("threads") = 1,
      R"doc(Vector-Jacobian product of tanh_jet: t (the forward's tanh(a)), da, d2a (or None) and
the cotangents gt, gdh, gd2h of (t, dh, d2h). Returns (ga, gda, gd2a) (gd2a None when d2a is).)doc");

  // The kernels' vectorisable elementary functions (elementary.h), for their accuracy tests.
  m.def(
      "elementary",
      [](const std::string& name, const CArray<double>& x, bool single) {
        py::array_t<double> out(x.size());
        double* o = out.mutable_data();
        const double* v = x.data();
        auto apply = [&](auto f) {
          for (py::ssize_t i = 0; i < x.size(); ++i)
            o[i] = single ? static_cast<double>(f(static_cast<float>(v[i]))) : f(v[i]);
        };
        if (name == "tanh") apply([](auto u) { return ms::poly_tanh(u); });
        else if (name == "softplus") apply([](auto u) { return ms::softplus(u); });
        else if (name == "sigmoid") apply([](auto u) { return ms::sigmoid(u); });
        else if (name == "exp") apply([](auto u) { return ms::poly_exp(u); });
        else if (name == "expm1") apply([](auto u) { return ms::poly_expm1(u); });
        else throw std::invalid_argument("elementary: unknown function '" + name + "'");
        return out;
      },
      py::arg("name"), py::arg("x"), py::arg("single"),
      R"doc(The kernels' polynomial elementary functions (elementary.h) on x (float64 array):
name is tanh, softplus (torch's threshold 20), sigmoid, exp or expm1; single evaluates in float32.
Returns float64 (n,). For accuracy tests; exp and expm1 take |x| <= 700 (float32: 80).)doc");

  m.def(
      "philox4x32_10",
      [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
        const ms::U32x4 r = ms::philox4x32_10(c0, c1, c2, c3, k0, k1);
        return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
      },
      py::arg("c0"), py::arg("c1"), py::arg("c2"), py::arg("c3"), py::arg("k0"), py::arg("k1"),
      R"doc(The raw Philox4x32-10 block function: counter (c0, c1, c2, c3) and key (k0, k1), all
uint32. Returns the four output words (for known-answer tests).)doc");

  m.def(
      "normals",
      [](uint64_t seed, uint64_t path0, int64_t n_paths, uint64_t step, int n, bool single,
         uint32_t stream) -> py::array {
        if (n_paths < 0 || n < 0) throw std::invalid_argument("sizes must be non-negative");
        if (stream >= ms::kStreamLimit) throw std::invalid_argument("stream must be < 256");
        if (single) {
          py::array_t<float> a(std::vector<int64_t>{n_paths, n});
          ms::cpu::fill_normals<float>(seed, path0, n_paths, step, n, a.mutable_data(), stream);
          return a;
        }
        py::array_t<double> a(std::vector<int64_t>{n_paths, n});
        ms::cpu::fill_normals<double>(seed, path0, n_paths, step, n, a.mutable_data(), stream);
        return a;
      },
      py::arg("seed"), py::arg("path0"), py::arg("n_paths"), py::arg("step"), py::arg("n"), py::arg("single"),
      py::arg("stream") = static_cast<uint32_t>(ms::STREAM_DYNAMICS),
      R"doc(Standard normals of (seed, stream, path, step) for the paths path0 .. path0 + n_paths - 1.

n: normals per path; single: float32 (else float64) with the kernels' single-precision
generator; stream: Philox stream id (streams(); default DYNAMICS, the simulation noise).
Returns (n_paths, n) float32 or float64.)doc");

  m.def(
      "normals_probe",
      [](int64_t n_paths, int64_t n_steps, int per_step, uint64_t seed, int threads, bool single) {
        py::gil_scoped_release release;
        return single ? ms::cpu::normals_throughput_probe<float>(n_paths, n_steps, per_step, seed, threads)
                      : ms::cpu::normals_throughput_probe<double>(n_paths, n_steps, per_step, seed, threads);
      },
      py::arg("n_paths"), py::arg("n_steps"), py::arg("per_step"), py::arg("seed"), py::arg("threads"),
      py::arg("single"),
      R"doc(Benchmark probe: draw per_step (1, 2 or 4) normals per path-step on the CPU, as a
simulation step would, without the SDE arithmetic. Returns a checksum (float) of the draws.)doc");

  m.def(
      "exact_sum",
      [](const CArray<double>& values) {
        ms::ExactSum s;
        for (py::ssize_t i = 0; i < values.size(); ++i) s.add(values.data()[i]);
        return s.value();
      },
      py::arg("values"),
      R"doc(The correctly rounded sum of a float64 array (estimators/exact_sum.h), independent of
the order of the values. Returns a float.)doc");

  m.def(
      "cuda_time_kernel",
      [](int model_id, const CArray<double>& params, double eps, double dt, int64_t n_paths, int64_t n_steps,
         uint64_t seed, bool exact_ou, bool single, int device) {
#ifdef MULTISCALE_HAVE_CUDA
        ms::RunSpec spec;
        spec.model_id = model_id;
        spec.params.assign(params.data(), params.data() + params.size());
        spec.eps = eps;
        spec.dt = dt;
        spec.n_paths = n_paths;
        spec.n_steps = n_steps;
        spec.seed = seed;
        spec.exact_ou = exact_ou;
        py::gil_scoped_release release;
        return single ? ms::cuda::time_kernel<float>(spec, device) : ms::cuda::time_kernel<double>(spec, device);
#else
        (void)model_id; (void)params; (void)eps; (void)dt; (void)n_paths; (void)n_steps; (void)seed;
        (void)exact_ou; (void)single; (void)device;
        throw std::runtime_error("multiscale was built without CUDA kernels");
#endif
      },
      py::arg("model_id"), py::arg("params"), py::arg("eps"), py::arg("dt"), py::arg("n_paths"),
      py::arg("n_steps"), py::arg("seed"), py::arg("exact_ou"), py::arg("single"), py::arg("device"),
      R"doc(Benchmark: time n_steps of n_paths paths on CUDA device `device` (no saves, no
observables), in float32 if single. Returns the kernel time in seconds. Raises RuntimeError in a
build without CUDA.)doc");
}
