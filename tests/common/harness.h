// Test harness shared by every backend's tests: host tensors with free strides, fresh random cases,
// poisoning, and the correctness rule of docs/design.md against the fp64 oracle.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "flatattn/attention.h"

namespace flatattn::testing {

/// An owning host buffer with a tensor view over it. Physical layout: the logical dims stored in the
/// order `perm` (outermost first), with `pad` extra elements after each run of the innermost dim.
struct HostTensor {
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape, stride;
  std::vector<unsigned char> storage;

  static HostTensor make(DType dtype, std::vector<std::int64_t> shape, std::vector<int> perm = {},
                         std::int64_t pad = 0);
  [[nodiscard]] TensorView view(Device device = Device::cpu()) const;
  [[nodiscard]] void* data() { return storage.data(); }
  [[nodiscard]] std::int64_t numel() const;
  [[nodiscard]] std::size_t bytes() const { return storage.size(); }
  /// Element at a logical row-major index (0..numel-1), as double.
  [[nodiscard]] double at(std::int64_t logical) const;
  void set(std::int64_t logical, double v);
  /// Fill with N(mean, sd^2) values rounded to the dtype.
  void fill_normal(std::mt19937_64& rng, double sd = 1.0, double mean = 0.0);
  /// NaN everywhere (the storage padding included), so unwritten outputs fail.
  void poison();
  /// Offset in elements of a logical row-major index.
  [[nodiscard]] std::int64_t offset(std::int64_t logical) const;
};

/// One randomized attention case.
struct Case {
  std::int64_t batch = 1, nq = 1, nk = 1, hq = 1, hkv = 1, d = 64;
  DType dtype = DType::f32;
  Options options{};
  bool varlen = false;
  std::vector<std::int32_t> seqlens_q, seqlens_k;  ///< varlen: per-sequence lengths (size = batch)
  bool strided = false;     ///< q/k/v/out stored as (B, H, N, D) with padding: non-contiguous views
  double input_sd = 1.0;    ///< standard deviation of q, k, v (large values give large logits)
  [[nodiscard]] std::string name() const;
};

/// Tensors of a case: inputs filled, outputs poisoned.
struct CaseTensors {
  Case c;
  HostTensor q, k, v, out, lse, dout, dq, dk, dv, cu_q, cu_k;
  [[nodiscard]] ForwardArgs forward_args(Device device = Device::cpu()) const;
  [[nodiscard]] BackwardArgs backward_args(Device device = Device::cpu()) const;
  [[nodiscard]] std::optional<Varlen> varlen(Device device = Device::cpu()) const;
};

/// Builds the tensors of a case (inputs random from rng; outputs, lse and gradients poisoned).
/// with_backward also allocates dout (random) and dq/dk/dv (poisoned).
CaseTensors make_case(const Case& c, std::mt19937_64& rng, bool with_backward = false);

/// Result of one comparison under the correctness rule
///   max|out - ref| <= 2 * max|naive_lowp - ref| + floor,
/// floor = the rounding of the output dtype at the reference's scale (FlashAttention 3's rule).
struct Verdict {
  double max_err = 0, naive_err = 0, floor = 0, rel_err = 0, bound = 0;
  std::int64_t nonfinite = 0;   ///< NaN/Inf where the reference is finite (or mismatched infinities)
  bool pass = false;
  [[nodiscard]] std::string str() const;
};

/// Compares `out` against the fp64 oracle `ref` with naive_lowp as the low-precision yardstick.
/// Passing an empty naive_lowp uses only `abs_floor + rel_tol * max|ref|` as the bound. For f32 the
/// bound always includes 1e-5 * max|ref| (docs/design.md's fp32 tolerance; the yardstick sums in double).
Verdict judge(const HostTensor& out, const HostTensor& ref, const HostTensor* naive_lowp, DType dtype,
              double rel_tol = 0.0);

/// Oracle outputs of a case's forward: out (f64), lse (f64), and the naive low-precision out.
struct ForwardOracle {
  HostTensor out, lse, naive_out;
};
ForwardOracle oracle_forward(const CaseTensors& t);

/// Oracle gradients (f64) and naive low-precision gradients (inputs rounded, f64 math then rounded
/// to the dtype: the yardstick for gradient checks).
struct BackwardOracle {
  HostTensor dq, dk, dv;
};
BackwardOracle oracle_backward(const CaseTensors& t);
/// The naive reference's gradients of case t in the input dtype (ref::Precision::input: the docs/design.md
/// rule's low-precision yardstick), written over poisoned tensors of the case's dtype.
BackwardOracle naive_lowp_backward(const CaseTensors& t);

/// Judges an LSE buffer (f32) against the oracle's: exact -inf where the row is empty, otherwise
/// |lse - ref| <= tol * max(1, |ref|).
Verdict judge_lse(const HostTensor& lse, const HostTensor& ref, double tol);

/// Random case generator: fresh shapes and features for sweeps (seeded from the clock by callers).
Case random_case(std::mt19937_64& rng, DType dtype, std::int64_t max_n = 300);

/// A seed that differs per run (reported by tests so a failure can be replayed with FLATATTN_SEED).
std::uint64_t fresh_seed();

}  // namespace flatattn::testing
