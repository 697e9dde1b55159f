// The sparse masks of the checks (Case::sparse): random block lists at a density, FlexAttention's example
// masks (causal, sliding window, prefix-LM, document) as block lists + bits built from their element
// predicate, and local + global positions; the BlockSparse / LocalGlobal arguments that carry them.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "flatattn/attention.h"
#include "src/check/case.h"

namespace flatattn::check {

/// Fills t's sparse tensors (t.c.sparse on) from `seed`: lists per (b, h) (or broadcast), bits of the
/// partial blocks (rule bits), the transposed q lists when give_q, the globals (rule local_global).
void make_sparse(CaseTensors& t, std::uint64_t seed);

/// How a caller views one of t's host tensors (a device mirror, or the host tensor itself).
using ViewOf = std::function<TensorView(const HostTensor&)>;

/// The BlockSparse argument of t's case (absent when the case has none, or derives its lists).
std::optional<BlockSparse> sparse_args(const CaseTensors& t, Device device = Device::cpu());
std::optional<BlockSparse> sparse_args(const CaseTensors& t, const ViewOf& view);

/// The LocalGlobal argument of t's case (absent unless its rule is local_global).
std::optional<LocalGlobal> local_global_args(const CaseTensors& t, Device device = Device::cpu());
std::optional<LocalGlobal> local_global_args(const CaseTensors& t, const ViewOf& view);

/// t's sparse tensors that its arguments reference (for callers that mirror tensors onto a device).
std::vector<HostTensor*> sparse_tensors(CaseTensors& t);

/// The element masks of t's case (ref::sparse_element_mask), one nq x nk (sequence's lengths) per (b, h) at
/// index b * Hq + h; empty without a sparse mask. For the yardsticks that do not go through the oracle.
std::vector<std::vector<char>> sparse_element_masks(const CaseTensors& t);

/// "sparse(128x128 random 0.5 full0.5 band)" for case names.
std::string sparse_name(const SparseCase& s);

}  // namespace flatattn::check
