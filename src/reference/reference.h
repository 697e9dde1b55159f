// The oracle: naive attention in fp64 that materializes S and P. Small and obviously right; every
// backend is tested against it (docs/design.md, "The correctness rule"). Blocks of rows (and, in the backward,
// of keys) run on OpenMP threads (parallel.h); every result is bitwise that of one thread.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "flatattn/attention.h"
#include "src/core/problem.h"

namespace flatattn::ref {

/// Arithmetic of the naive reference.
/// f64:   every step in double; outputs rounded once when stored. This is the oracle.
/// input: products accumulated in fp32 and S, P and O rounded to q's dtype after each step, as a
///        framework computing naive attention in that dtype does; gives the "naive_lowp" error of
///        the correctness rule.
enum class Precision { f64, input };

/// Same arguments and semantics as flatattn::forward, CPU tensors only. Inputs and outputs may be
/// any float dtype independently (f64 outputs keep full precision); lse may be f32 or f64.
void forward(const ForwardArgs& args, const Options& options = {}, Precision precision = Precision::f64);

/// forward(calls[c], options, precision) for every c, all validated before any output is written, then run as
/// one parallel loop over every call's (b, h) (the KV-cache oracle's per-sequence calls). The calls' outputs
/// must not overlap. Memory: k and v of every call are held in double while it runs (8 bytes per element).
void forward_each(std::span<const ForwardArgs> calls, const Options& options = {}, Precision precision = Precision::f64);

/// Exact gradients in fp64 (S and P recomputed from q, k, v; args.out and args.lse are validated but
/// not used, so the oracle does not inherit a kernel's forward error). Precision::input rounds P, dP,
/// dS and the gradients to q's dtype after each step (autograd through naive attention in that dtype).
/// ALiBi slopes and sinks are read from args (f32 or f64); args.dsinks (f32 or f64), when present, gets
/// the sinks' gradient -sum_{b,i} e^(sink_h - LSE_i) D_i. args.bias (any float dtype) is added to the scaled
/// logits; args.dbias (f32 or f64, the bias's shape), when present, gets dS summed over the bias's size-1 dims.
void backward(const BackwardArgs& args, const Options& options = {}, Precision precision = Precision::f64);

/// The explicit element mask of a block-sparse / local + global call (p.sparse on) for sequence b, query head
/// h: nq x nk row-major, 1 = visible (include/flatattn/sparse.h defines it; the oracle applies it).
std::vector<char> sparse_element_mask(const Problem& p, std::int64_t b, std::int64_t h, const SeqSpan& sp);

}  // namespace flatattn::ref
