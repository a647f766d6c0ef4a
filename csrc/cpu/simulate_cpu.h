// CPU entry points (non-template, so the bindings do not compile the numerics).
#pragma once
#include "multiscale/rng/streams.h"
#include "multiscale/run.h"

namespace ms::cpu {

template <class Real>
RunResult simulate(const RunSpec& spec, const RunBuffers<Real>& out);

// Throughput probe for benchmarks: generate n normals per path for n_paths paths and return a
// checksum (the generator alone is the ceiling of any SDE kernel).
template <class Real>
double normals_throughput_probe(int64_t n_paths, int64_t n_steps, int normals_per_step,
                                uint64_t seed, int threads);

// Fill out[n_paths][n] with the normals of (seed, stream, path, step) (streams: rng/streams.h):
// STREAM_DYNAMICS reproduces a simulation's noise (tests), STREAM_INITIAL draws initial
// conditions, STREAM_SURROGATE the learned SDE's noise.
template <class Real>
void fill_normals(uint64_t seed, uint64_t path0, int64_t n_paths, uint64_t step, int n, Real* out,
                  uint32_t stream = STREAM_DYNAMICS);

}  // namespace ms::cpu

namespace ms::cpu {
int lanes_float64();  // paths per SIMD block
int lanes_float32();
const char* simd_level();  // instruction set the CPU kernels were compiled for
}  // namespace ms::cpu
