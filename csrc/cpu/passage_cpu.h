// CPU entry point of the first-passage kernel (non-template, so the bindings do not compile
// the numerics).
#pragma once
#include "multiscale/run.h"

namespace ms::cpu {

// Runs every path of `spec` to its outcome. Returns true if should_stop() interrupted the run
// (unfinished paths then report OUTCOME_MAX_STEPS with their steps so far).
bool passage(const PassageSpec& spec, const PassageBuffers& out);

}  // namespace ms::cpu
