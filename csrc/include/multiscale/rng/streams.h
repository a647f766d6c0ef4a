// The registry of Philox streams: the one place a stream id is given out. Every random number
// of the project is addressed by (seed, stream, path, step, block) (rng/philox.h); draws for
// different purposes use different streams, so they are independent whatever their paths and
// steps. Ids are 8 bits (counter word 0, bits 24..31) and part of the reproducibility
// contract: a seeded result names its stream (dataset attribute rng_stream), and renumbering
// would change every number drawn from it. Never reuse an id; only append.
// The bindings export the table (_core.streams()); the Python mirror is multiscale/_streams.py,
// and tests/test_codes.py checks that the two agree.
#pragma once
#include <cstdint>

namespace ms {

enum Stream : uint32_t {
  STREAM_DYNAMICS = 0,   // Brownian increments of the full SDE (em_step: simulate, first passage)
  STREAM_INITIAL = 1,    // random initial conditions (the averaging replicas' start perturbation)
  STREAM_AUX = 2,        // estimators' own draws: Brownian-bridge crossing uniforms of first
                         // passage (bridge_draws)
  STREAM_FROZEN = 3,     // the fast process with x frozen (estimators/frozen_average.h)
  STREAM_SURROGATE = 4,  // noise of the learned effective SDE (models/surrogate.h kNoiseStream;
                         // _core.normals for the torch reference EffectiveSDE._simulate_torch)
};

constexpr uint32_t kStreamLimit = 256;  // ids must fit in 8 bits

// Name of each stream, indexed by its id.
struct StreamName {
  uint32_t id;
  const char* name;
};

constexpr StreamName kStreams[] = {
    {STREAM_DYNAMICS, "DYNAMICS"},
    {STREAM_INITIAL, "INITIAL"},
    {STREAM_AUX, "AUX"},
    {STREAM_FROZEN, "FROZEN"},
    {STREAM_SURROGATE, "SURROGATE"},
};

constexpr bool streams_are_indices() {
  for (uint32_t i = 0; i < sizeof(kStreams) / sizeof(kStreams[0]); ++i)
    if (kStreams[i].id != i || kStreams[i].id >= kStreamLimit) return false;
  return true;
}
static_assert(streams_are_indices(), "kStreams: stream i must sit at index i, below kStreamLimit");

}  // namespace ms
