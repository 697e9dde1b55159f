// The table of bad inputs (issue 20, item 5): every argument of forward() and backward() and every limit,
// each row a valid call with one thing broken, expecting a flatattn::Error that names the argument and leaves
// every output untouched. One table for the CPU tests (tests/cpu/test_bad_inputs.cc) and the CUDA tests
// (tests/cuda/test_errors.cc, BadInputs.*): a backend supplies the valid call's views on its device
// (BadInputCall) and checks its outputs; the rows only edit views and options, so they are device-agnostic.
#pragma once

#include <functional>
#include <span>
#include <string>

#include "flatattn/attention.h"

namespace flatattn::check {

/// A valid call on one device: forward and backward arguments over the same tensors (batched, or varlen when
/// `varlen` holds), options, and extra valid views the rows may attach (fp32 (Hq) ALiBi slopes and sinks,
/// fp32 (Hq) dsinks).
struct BadInputCall {
  ForwardArgs fwd;
  BackwardArgs bwd;
  Options options;
  TensorView alibi, sinks, dsinks;
};

/// One row: which call it breaks, how, and the argument the Error must name.
struct BadInput {
  const char* name;      ///< unique row name (gtest parameter name)
  const char* argument;  ///< Error::argument() expected
  bool backward;         ///< breaks backward() (else forward())
  bool varlen;           ///< needs the varlen call
  bool host_metadata;    ///< checks the contents of cu_seqlens (host only: CUDA checks them in the kernels)
  std::function<void(BadInputCall&)> brk;  ///< the one thing broken (on a copy of the valid call)
};

/// Every row.
std::span<const BadInput> bad_inputs();

/// Applies row `r` to a copy of `valid` (the varlen call when r.varlen) and calls forward() or backward().
/// Returns the Error's argument, "" when nothing was thrown; `what` receives the message (or "no error").
std::string run_bad_input(const BadInput& r, const BadInputCall& valid, Stream stream, std::string& what);

}  // namespace flatattn::check
