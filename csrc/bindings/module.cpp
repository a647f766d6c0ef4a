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
#include "../cpu/passage_cpu.h"
#include "../cpu/simulate_cpu.h"
#include "../cuda/simulate_cuda.h"
#include "multiscale/dispatch.h"
#include "multiscale/estimators/exact_sum.h"
#include "multiscale/estimators/first_passage.h"
#include "multiscale/rng/normal.h"
#include "multiscale/view.h"
#include "multiscale/rng/philox.h"

namespace py = pybind11;

#ifndef MULTISCALE_VERSION
#define MULTISCALE_VERSION "0.0.0"
#endif

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

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
  const int dim = dims.first + dims.second;
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
bool frozen_impl(int model_id, const CArray<double>& params, double eps, const CArray<double>& x_points,
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
  return false;
}

}  // namespace

// First-passage segments; `state` (n, dim) float64 is updated in place to the final states.
py::dict passage_impl(int model_id, const CArray<double>& params, double eps, double dt, bool exact_ou,
                      uint64_t seed, py::array state, const CArray<uint32_t>& path_ids,
                      const CArray<double>& level, const CArray<double>& w, double lo, double hi,
                      int64_t max_steps, bool bridge, int threads, int device) {
  ms::PassageSpec spec;
  spec.model_id = model_id;
  spec.params.assign(params.data(), params.data() + params.size());
  spec.eps = eps;
  const auto dims = ms::model_dims(model_id, spec.params.data(), eps);
  if (dims.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(model_id));
  const int dim = dims.first + dims.second;
  const py::ssize_t n = path_ids.size();
  if (level.size() != n || w.size() != dim || max_steps < 0 || !(dt > 0) || !(lo < hi))
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
  out.level = level.data();
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

// A just-in-time build of a user model names its module (see multiscale/models/_jit.py).
#ifndef MS_MODULE_NAME
#define MS_MODULE_NAME _core
#endif
PYBIND11_MODULE(MS_MODULE_NAME, m) {
  m.doc() = "multiscale compiled kernels (internal; use the multiscale package API)";
  m.def("build_info", &build_info);
  m.def("model_dims", [](int id, const CArray<double>& params, double eps) {
    auto d = ms::model_dims(id, params.data(), eps);
    if (d.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(id));
    return d;
  });
  m.def("model_coefficients", [](int id, const CArray<double>& params, double eps, const CArray<double>& x,
                                  const CArray<double>& y) {
    auto d = ms::model_dims(id, params.data(), eps);
    if (d.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(id));
    if (x.ndim() != 2 || x.shape(1) != d.first) throw std::invalid_argument("x must have shape (n, nx)");
    const py::ssize_t n = x.shape(0);
    if (y.ndim() != 2 || y.shape(0) != n || y.shape(1) != d.second)
      throw std::invalid_argument("y must have shape (n, ny)");
    py::array_t<double> f({n, static_cast<py::ssize_t>(d.first)}), f0({n, static_cast<py::ssize_t>(d.first)}),
        a({n, static_cast<py::ssize_t>(d.first)}), g({n, static_cast<py::ssize_t>(d.second)}),
        b({n, static_cast<py::ssize_t>(d.second)});
    {
      py::gil_scoped_release release;
      ms::model_coefficients(id, params.data(), eps, n, x.data(), y.data(), f.mutable_data(), f0.mutable_data(),
                             a.mutable_data(), g.mutable_data(), b.mutable_data());
    }
    py::dict out;
    out["f"] = f;
    out["f0"] = f0;
    out["a"] = a;
    out["g"] = g;
    out["b"] = b;
    return out;
  });
  m.def("simulate_float64", &simulate_impl<double>);
  m.def("frozen_average_float64", &frozen_impl<double>);
  m.def("frozen_sizes", [](int id, const CArray<double>& params, double eps, bool corrector) {
    auto r = ms::cpu::frozen_sizes(id, params.data(), eps, corrector);
    if (r.first < 0) throw std::invalid_argument("unknown model id " + std::to_string(id));
    return r;
  });
  m.def("simulate_float32", &simulate_impl<float>);
  m.def("passage", &passage_impl);
  // The noise a first-passage segment draws, for engines outside the compiled kernels (the
  // learned surrogate): normals of (seed, stream, id, step) and the two bridge uniforms.
  m.def("normals_ids", [](uint64_t seed, const CArray<uint32_t>& ids, uint64_t step, int n, uint32_t stream) {
    const ms::PhiloxKey key = ms::PhiloxKey::from_seed(seed);
    py::array_t<double> a(std::vector<py::ssize_t>{ids.size(), n});
    double* o = a.mutable_data();
    for (py::ssize_t i = 0; i < ids.size(); ++i)
      ms::normals<double>(key, stream, ids.data()[i], step, n, ms::View<double, 1>{o + i * n});
    return a;
  });
  m.def("bridge_uniforms", [](uint64_t seed, const CArray<uint32_t>& ids, uint64_t step) {
    const ms::PhiloxKey key = ms::PhiloxKey::from_seed(seed);
    py::array_t<double> a(std::vector<py::ssize_t>{ids.size(), 2});
    double* o = a.mutable_data();
    for (py::ssize_t i = 0; i < ids.size(); ++i) {
      const ms::U32x4 r = key(ms::STREAM_AUX, 0u, ids.data()[i], step);
      o[2 * i] = ms::uniform52(r.v[0], r.v[1]);
      o[2 * i + 1] = ms::uniform52(r.v[2], r.v[3]);
    }
    return a;
  });
  m.def("philox4x32_10", [](uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3, uint32_t k0, uint32_t k1) {
    const ms::U32x4 r = ms::philox4x32_10(c0, c1, c2, c3, k0, k1);
    return py::make_tuple(r.v[0], r.v[1], r.v[2], r.v[3]);
  });
  m.def("normals", [](uint64_t seed, uint64_t path0, int64_t n_paths, uint64_t step, int n, bool single,
                       uint32_t stream) -> py::array {
    if (n_paths < 0 || n < 0) throw std::invalid_argument("sizes must be non-negative");
    if (stream > 255) throw std::invalid_argument("stream must be < 256");
    if (single) {
      py::array_t<float> a(std::vector<int64_t>{n_paths, n});
      ms::cpu::fill_normals<float>(seed, path0, n_paths, step, n, a.mutable_data(), stream);
      return a;
    }
    py::array_t<double> a(std::vector<int64_t>{n_paths, n});
    ms::cpu::fill_normals<double>(seed, path0, n_paths, step, n, a.mutable_data(), stream);
    return a;
  }, py::arg("seed"), py::arg("path0"), py::arg("n_paths"), py::arg("step"), py::arg("n"),
     py::arg("single"), py::arg("stream") = 0);
  m.def("normals_probe", [](int64_t n_paths, int64_t n_steps, int per_step, uint64_t seed, int threads, bool single) {
    py::gil_scoped_release release;
    return single ? ms::cpu::normals_throughput_probe<float>(n_paths, n_steps, per_step, seed, threads)
                  : ms::cpu::normals_throughput_probe<double>(n_paths, n_steps, per_step, seed, threads);
  });
  m.def("exact_sum", [](const CArray<double>& v) {
    ms::ExactSum s;
    for (py::ssize_t i = 0; i < v.size(); ++i) s.add(v.data()[i]);
    return s.value();
  });
  m.def("cuda_time_kernel", [](int model_id, const CArray<double>& params, double eps, double dt, int64_t n_paths,
                               int64_t n_steps, uint64_t seed, bool exact_ou, bool single, int device) {
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
  });
}
