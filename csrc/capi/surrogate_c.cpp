// libmultiscale_surrogate: the C API (multiscale/surrogate/c_api.h) over the header-only evaluator.
// No exception crosses the C boundary: every entry point returns a status and records a message.
#include "multiscale/surrogate/c_api.h"

#include <cmath>
#include <exception>
#include <new>
#include <string>

#include "multiscale/surrogate/evaluator.h"

struct ms_surrogate {
  ms::surrogate::Surrogate impl;
};

namespace {

thread_local std::string g_error;

int fail(int code, const std::string& msg) {
  g_error = msg;
  return code;
}

int check(const ms_surrogate* s, const double* x, int64_t n, int member, const double* out, const char* fn) {
  if (!s) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": null surrogate handle");
  if (n < 0) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": n = " + std::to_string(n) + " < 0");
  if (n > 0 && (!x || !out)) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": null x or out");
  if (member < -1 || member >= s->impl.members())
    return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": member = " + std::to_string(member) +
                                               " outside [-1, " + std::to_string(s->impl.members()) + ")");
  const int64_t m = s->impl.dim();
  for (int64_t i = 0; i < n * m; ++i)
    if (!std::isfinite(x[i]))
      return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": x[" + std::to_string(i / m) + "][" +
                                                 std::to_string(i % m) + "] is not finite");
  g_error.clear();
  return MS_SURROGATE_OK;
}

template <class F>
int guarded(F&& f) {
  try {
    return f();
  } catch (const ms::surrogate::Error& e) {
    return fail(e.code(), e.what());
  } catch (const std::bad_alloc&) {
    return fail(MS_SURROGATE_ERR_IO, "out of memory");
  } catch (const std::exception& e) {
    return fail(MS_SURROGATE_ERR_FORMAT, e.what());
  } catch (...) {
    return fail(MS_SURROGATE_ERR_FORMAT, "unknown error");
  }
}

}  // namespace

extern "C" {

ms_surrogate* ms_surrogate_open(const char* path) {
  if (!path) {
    fail(MS_SURROGATE_ERR_ARGUMENT, "ms_surrogate_open: null path");
    return nullptr;
  }
  ms_surrogate* out = nullptr;
  const int rc = guarded([&] {
    out = new ms_surrogate{ms::surrogate::Surrogate::load(path)};
    g_error.clear();
    return MS_SURROGATE_OK;
  });
  return rc == MS_SURROGATE_OK ? out : nullptr;
}

void ms_surrogate_close(ms_surrogate* s) { delete s; }

int ms_surrogate_dim(const ms_surrogate* s) { return s ? s->impl.dim() : -1; }
int ms_surrogate_members(const ms_surrogate* s) { return s ? s->impl.members() : -1; }

const char* ms_surrogate_name(const ms_surrogate* s, int i) {
  if (!s || i < 0 || i >= s->impl.dim()) return nullptr;
  return s->impl.names()[static_cast<std::size_t>(i)].c_str();
}

int ms_surrogate_drift(const ms_surrogate* s, const double* x, int64_t n, int member, double* out) {
  if (int rc = check(s, x, n, member, out, "ms_surrogate_drift")) return rc;
  return guarded([&] {
    s->impl.drift_batch(x, n, out, member);
    return MS_SURROGATE_OK;
  });
}

int ms_surrogate_diffusion(const ms_surrogate* s, const double* x, int64_t n, int member, double* out) {
  if (int rc = check(s, x, n, member, out, "ms_surrogate_diffusion")) return rc;
  return guarded([&] {
    s->impl.diffusion_batch(x, n, out, member);
    return MS_SURROGATE_OK;
  });
}

int ms_surrogate_noise(const ms_surrogate* s, const double* x, int64_t n, int member, double* out) {
  if (int rc = check(s, x, n, member, out, "ms_surrogate_noise")) return rc;
  return guarded([&] {
    if (!s->impl.noise_batch(x, n, out, member))
      return fail(MS_SURROGATE_ERR_NUMERIC, "ms_surrogate_noise: the diffusion matrix is not positive definite");
    return MS_SURROGATE_OK;
  });
}

int ms_surrogate_kind(const ms_surrogate* s) {
  return s ? (s->impl.ring() ? MS_SURROGATE_KIND_RING : MS_SURROGATE_KIND_SDE) : -1;
}
int ms_surrogate_stencil(const ms_surrogate* s) { return s ? s->impl.stencil() : -1; }
int ms_surrogate_has_resolved(const ms_surrogate* s) { return s ? (s->impl.has_resolved() ? 1 : 0) : -1; }

int ms_surrogate_ring_closure(const ms_surrogate* s, const double* x, int64_t n, int member, double* u,
                              double* sigma) {
  const char* fn = "ms_surrogate_ring_closure";
  if (s && !s->impl.ring()) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": the surrogate is not a ring");
  if (n > 0 && !u && !sigma) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": u and sigma are both null");
  if (int rc = check(s, x, n, member, u ? u : sigma, fn)) return rc;
  return guarded([&] {
    s->impl.ring_closure_batch(x, n, u, sigma, member);
    return MS_SURROGATE_OK;
  });
}

int ms_surrogate_ring_resolved(const ms_surrogate* s, const double* x, int64_t n, double* r) {
  const char* fn = "ms_surrogate_ring_resolved";
  if (s && !s->impl.ring()) return fail(MS_SURROGATE_ERR_ARGUMENT, std::string(fn) + ": the surrogate is not a ring");
  if (int rc = check(s, x, n, -1, r, fn)) return rc;
  return guarded([&] {
    s->impl.resolved_batch(x, n, r);
    return MS_SURROGATE_OK;
  });
}

const char* ms_surrogate_last_error(void) { return g_error.c_str(); }
int ms_surrogate_format_version(void) { return ms::surrogate::kFormatVersion; }

}  // extern "C"
