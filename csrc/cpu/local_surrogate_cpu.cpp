// Full-width vectors where the target has AVX-512 (GCC prefers 256 bits by default): a block's
// lanes are 16 doubles or 32 floats, two 512-bit registers, and every operation is lane-wise, so
// the width changes speed, not the numbers. Before any include, so that everything inlined into
// the kernel shares the setting.
#if defined(__GNUC__) && !defined(__clang__) && defined(__AVX512F__)
#pragma GCC target("prefer-vector-width=512")
#endif
#include "local_surrogate_cpu.h"

#include <stdexcept>

#include "launch_cpu.h"

namespace ms::cpu {

int local_lanes_float64() { return lanes_for<LocalSurrogateModel<double>, double>(); }
int local_lanes_float32() { return lanes_for<LocalSurrogateModel<float>, float>(); }

int64_t local_surrogate_n_params(const LocalSurrogateSpec& spec, bool& valid) {
  return LocalSurrogateModel<double>::make(spec, valid).n_params;
}

template <class Real>
RunResult simulate_local(const RunSpec& spec, const LocalSurrogateArrays& a, const RunBuffers<Real>& out) {
  bool valid = false;
  LocalSurrogateModel<Real> m = LocalSurrogateModel<Real>::make(a.spec, valid);
  if (!valid || static_cast<int64_t>(a.params.size()) != m.n_params)
    throw std::invalid_argument("local surrogate arrays do not match its description");
  const std::vector<Real> params(a.params.begin(), a.params.end());
  PointerResolved<Real> r;
  r.fn = reinterpret_cast<ResolvedBlockFn<Real>>(a.resolved_fn);
  r.params = a.resolved_params.data();
  m.bind(params.data(), r);
  return run(m, spec, out);
}

template RunResult simulate_local<double>(const RunSpec&, const LocalSurrogateArrays&, const RunBuffers<double>&);
template RunResult simulate_local<float>(const RunSpec&, const LocalSurrogateArrays&, const RunBuffers<float>&);

}  // namespace ms::cpu
