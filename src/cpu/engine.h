// The CPU engine's entry points with an explicit plan (src/core/backend.h's cpu::forward/backward take
// the plan from src/cpu/policy.h). Tests use these to force small tiles so that every code path (many
// key blocks, partial tiles, block edges on the mask boundary) runs on small, fast problems.
#pragma once

#include "flatattn/attention.h"
#include "src/core/problem.h"
#include "src/cpu/policy.h"

namespace flatattn::cpu {

/// Forward with `plan` (dataflow flash or flat; block_m a multiple of kRowAlign; Flash block_n a multiple
/// of kPanel). Throws Error(invalid_argument) naming "plan" otherwise.
Report run_forward(const Problem& p, const FwdTensors& t, const ForwardPlan& plan);

/// Backward with `plan` (block_m a multiple of kRowAlign, block_n of kPanel, block_n_dkdv of kKeyAlignBwd).
Report run_backward(const Problem& p, const BwdTensors& t, const BackwardPlan& plan);

}  // namespace flatattn::cpu
