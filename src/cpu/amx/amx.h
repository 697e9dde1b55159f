// The CPU engine's bf16 forward products on the AMX matrix units (Intel AMX-BF16: TMUL tiles, fp32
// accumulation; Intel Architecture Instruction Set Extensions Programming Reference, ch. 3).
//
// Path selection (forward_matmul): bf16 inputs run S = Q K^T and O += P V on AMX when the CPU has
// AMX-TILE + AMX-BF16, the OS enables the tile state (XCR0 bits 17/18) and grants this process the tile
// data permission (Linux arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA = 18), asked once per
// process); otherwise today's fp32 path runs. The environment variable FLATATTN_CPU_MATMUL overrides:
//   unset, "" or "auto": AMX for bf16 where available, fp32 elsewhere;
//   "amx":  AMX for bf16; an Error if the CPU/OS cannot (never a silent fallback);
//   "avx512bf16": the same bf16 operand layouts multiplied with AVX512-BF16 (VDPBF16PS, dpbf16.cc); an
//           Error if the CPU/OS cannot or this build lacks the kernels (FLATATTN_HAVE_AVX512BF16: the
//           compiler refused -mavx512bf16);
//   "fp32": the fp32 path (bf16 widened to fp32 tiles, src/cpu/gemm.h).
// "auto" picks amx > avx512bf16 where the CPU is listed in kFastDpbf16 (detect.cc: CPUs whose VDPBF16PS was
// measured to outrun the fp32 path, AMD Zen 5 so far) > fp32 (elsewhere avx512bf16 only when forced: on the
// Intel CPU it was measured on without AMX it ran at 0.62-0.92x the fp32 path).
// f16 inputs take the bf16 paths on exact bf16 pieces (SplitPolicy below) by bf16's rule: "auto" picks amx > fp32,
// forward and backward alike; Report kernels end in "_amx_split2" / "_avx512bf16_split2".
// f32 inputs take the fp32 path unless Options::fp32_matmul = bf16 (the opt-in, include/flatattn/options.h):
// then they take the bf16 paths as bf16 inputs do, rounded to bf16 (nearest even) by the packers below, with
// "auto" picking amx > avx512bf16 > an Error naming fp32_matmul (no silent exact fallback); the forced values
// above apply unchanged ("fp32" runs exact products: a debugging override). f16 inputs with the opt-in: Error.
// The backward (src/cpu/backward.cc) takes the same path by the same rule: its five products
// S = Q K^T, dP = dO V^T, dV += P^T dO, dK += dS^T Q and dQ += dS K on the bf16 layouts below (dO and V
// as the Q and K operands of S, P^T, dS^T and dS as the P operand of O += P V, dO, Q and K as its V).
// The f16 backward splits its operands as the forward does (SplitPolicy: all five products on pieces, P and dS
// as 2 pieces too); f32 inputs take the fp32 path unless opted in. The forward and backward Reports' kernel names end in "_amx" when the AMX path ran, "_avx512bf16" when the AVX512-BF16 path ran.
//
// Precision of the AMX path: Q, K and V are bf16 as given (exact; f32 opted in: rounded to bf16 once, the
// only change of precision the opt-in makes); S is accumulated in fp32 and scaled
// in fp32 (plain logits: inside the exponent, e^(scale s - m) = 2^(s (scale log2 e) - m log2 e) by one FMA,
// bf16_softmax_step); the softmax, masks, score/probability hooks, sinks and dropout run in fp32 as on the
// fp32 path; P is rounded to bf16 (nearest even) before O += P V, accumulated in fp32 -- the precision every
// GPU kernel of flatattn has (P is a bf16 MMA operand there too).
// The backward likewise: dO is bf16 as given (f32 opted in: rounded like Q), S and dP are accumulated in
// fp32, P and dS are formed in fp32 and rounded to bf16 (nearest even) only as operands of dV, dK and dQ, which accumulate in fp32 (the
// scale is applied to dK and dQ in fp32 when they are stored).
//
// Layouts (bf16 stored as uint16):
//   Q tile:  row-major [rows][kd], kd = round_up(D, 32) (zero lanes beyond D), unscaled;
//   K:       VNNI panels of 16 keys: key j, dim i at (j / 16) * kd * 16 + (i / 2) * 32 + (j % 16) * 2 + i % 2;
//   V:       VNNI key pairs: key j, dim i at (j / 2) * 2 * dp + i * 2 + j % 2 (dp = padded_d(D));
//   P tile:  row-major [rows][ldp] bf16 (from the fp32 logit tile).
// Row counts are multiples of kAmxRows (16), key counts multiples of 32; padding is zero-filled.
#pragma once

#include <cstdint>
#include <string_view>

#include "src/core/problem.h"
#include "src/cpu/pack.h"

namespace flatattn::cpu {

inline constexpr int kAmxRows = 16;  ///< rows of one AMX tile: AMX row tiles are padded to this
inline constexpr int kAmxK = 32;     ///< bf16 inner-dim elements per tile step (64 bytes)
inline constexpr int kAmxSlab = 32;  ///< rows of one slab of the bf16 forward tiles (forward_bf16.cc)

/// The product path of a forward.
enum class MatmulPath { fp32, amx, avx512bf16 };

/// The Report suffix of a path ("", "_amx", "_avx512bf16").
const char* matmul_suffix(MatmulPath path);

/// True when this CPU and OS can run AMX-BF16 tiles in this process (CPUID leaf 7 EDX bits 22/24,
/// OSXSAVE, XCR0 bits 17/18, and the Linux tile-data permission, requested on the first call).
bool amx_available();

/// True when this build has the AVX512-BF16 kernels (the compiler accepted -mavx512bf16), the CPU has
/// AVX512F, AVX512BW and AVX512-BF16 (CPUID leaf 7 sub-leaf 0 EBX 16/30, sub-leaf 1 EAX 5) and the OS
/// saves the ZMM state (XCR0 bits 1, 2, 5, 6, 7).
bool avx512bf16_available();
/// True when this build has the AVX512-BF16 kernels (FLATATTN_HAVE_AVX512BF16).
bool avx512bf16_built();

/// The path a forward or backward of p takes (p.dtype, p.fp32_matmul; reads FLATATTN_CPU_MATMUL each call; see
/// above). Throws Error for an unknown value, for "amx" where amx_available() is false, and for the f32 opt-in
/// where it cannot be served (choose_matmul).
MatmulPath forward_matmul(const Problem& p);

/// True when avx512bf16_available() and this CPU is one of kFastDpbf16's (detect.cc: vendor and family whose
/// AVX512-BF16 products were measured faster than the fp32 path): "auto" then takes avx512bf16 where AMX is absent.
bool avx512bf16_outruns_fp32();

/// The product units a process can use, as forward_matmul's rule sees them (named so that a test can describe any
/// machine, including one without either unit).
struct MatmulUnits {
  bool amx = false;                  ///< amx_available()
  bool dpbf16 = false;               ///< avx512bf16_available()
  bool dpbf16_built = false;         ///< avx512bf16_built()
  bool dpbf16_outruns_fp32 = false;  ///< avx512bf16_outruns_fp32()
};

/// This process's units (detection runs once per process; the AMX permission request is a syscall).
MatmulUnits matmul_units();

/// forward_matmul's rule with the environment and the machine given (so the tests can drive every branch):
/// env is FLATATTN_CPU_MATMUL's value, units what matmul_units() would say.
MatmulPath choose_matmul(DType dt, Fp32Matmul fp32_matmul, std::string_view env, const MatmulUnits& units);

/// How the bf16 products see their operands (issue 21: fp16 on AMX-BF16). Each operand x (Q, K, V and the
/// softmax's P) is packed as the sum of `pieces` bf16 pieces, x_1 = bf16(x), x_k = bf16(x - x_1 - ... - x_{k-1})
/// (nearest even; later pieces 0 where x_1 is not finite), and S = Q K^T and O += P V sum the piece products
/// x_a y_b (pieces counted from 0) with a + b <= max_order (S, dP) or <= pv_max_order (P V and the gradients),
/// each exact in fp32 (8 x 8 significand bits), accumulated in fp32 on the same tile kernels. S: the products are
/// laid side by side along the inner (head) dim, so amx_qk runs unchanged on an inner dim of products * Kd (the
/// smallest products first). O += P V: one amx_pv per product, on piece planes of P and V. The technique is the
/// "BF16x9" FP32 emulation on bf16 matrix units (NVIDIA, cuBLAS 12.9 notes): 3 pieces, 9 products.
///   bf16 inputs (and f32 opted in, rounded once): 1 piece, 1 product -- the bf16 path unchanged.
///   f16 inputs: 2 pieces (hi, lo). An fp16 value (11-bit significand, exponent inside bf16's range) is exactly
///     hi + lo, |lo| <= 2^-8 |x|. S = Q K^T and dP = dO V^T take all 4 products, so they sum exactly the fp32
///     path's products (another order). P (fp32) is carried to 16 bits (residual <= 2^-17 P); V is exact. The
///     products whose left operand is P or dS (O += P V, dV += P^T dO, dK += dS^T Q, dQ += dS K) take 3: lo x lo
///     is dropped (kSplitF16 below says why that is safe there and not in S). The backward (src/cpu/backward.cc)
///     uses the same pieces: S and dP on the Q / K layouts (S in the forward's order, so it matches the forward's
///     LSE), the gradients as piece-plane pv products, P^T, dS^T and dS as 2 pieces (bf16_transpose,
///     split_to_bf16).
///   f32 inputs (experimental, FLATATTN_CPU_F32_SPLIT=9; unset: the exact fp32 path): 3 pieces carry the
///     24-bit significand; all 9 products (max_order 4, "BF16x9"). Forward only, and only on a forced bf16
///     path (auto: exact fp32). The 6 largest (max_order 2)
///     missed the rule with large logits and are not offered.
struct SplitPolicy {
  int pieces;          ///< bf16 pieces per operand, 1 .. kMaxPieces
  int max_order;       ///< piece product (a, b) is summed when a + b <= max_order (S = Q K^T, dP = dO V^T)
  int pv_max_order;    ///< likewise for the products whose left operand is P or dS (O += P V, dV, dK, dQ)
  const char* suffix;  ///< added to the path's Report suffix ("" for one piece)
};
inline constexpr int kMaxPieces = 3;
inline constexpr SplitPolicy kSplitBf16{1, 0, 0, ""};
/// f16: 4 products in S and dP, 3 (lo x lo dropped) in the P / dS products. The error argument:
///   P / dS side. |P_lo| <= 2^-8 P and |V_lo| <= 2^-8 |V| (likewise dS against dO, Q, K), so a dropped term is at
///   most 2^-16 P_ij |V_jd| (2^-18 is its typical size, not its bound). With P's own 2-piece residual (2^-17 P) the
///   P V product is off by <= 3 * 2^-17 sum_j P_ij |V_jd| (plus fp32 accumulation), against 2^-17 with all 4.
///   That is 1/21 of one f16 rounding (2^-11) of P or dS, which the rule's f16 yardstick makes before these
///   products (docs/design.md, "The rule": naive_lowp, and the backward's lse_storage formulation), and 1/43 of the
///   2u sum_j P_ij |V_jd| floor of a forward output (u = 2^-11). Measured on the tile kernels: 2^-16.2 of
///   sum_j P |V| at worst, against 2^-17.7 with 4 products (tests/cpu/test_split_orders.cc).
///   S / dP side. Their error is relative to sum_d |q_d k_d|, not to |S|: a dropped lo x lo is up to 2^-16 of
///   that sum, and where q . k cancels it is ~2^-9 of S itself. The LSE is judged at the fp32 tolerance (1e-5 per
///   row, judge_lse) and the backward recomputes P = exp(S - LSE) from its own S, so S and dP keep every product
///   (exact) and differ from the fp32 path's only by the order of the fp32 sum.
inline constexpr SplitPolicy kSplitF16{2, 2, 1, "_split2"};

inline constexpr SplitPolicy kSplitF32x9{3, 4, 4, "_split3x9"};

/// FLATATTN_CPU_F32_SPLIT: 9 (f32 inputs with fp32_matmul exact take the split forward with that many
/// products), 0 when unset or empty; an Error naming it for any other value.
int f32_split_products();

/// The split of p's operands on a bf16 path: kSplitF16 for f16 inputs, kSplitF32x9 for f32 inputs (exact)
/// under FLATATTN_CPU_F32_SPLIT, kSplitBf16 otherwise.
SplitPolicy split_policy(const Problem& p);

/// Piece k (from 0) of x by the rule above.
std::uint16_t bf16_piece(float x, int k);

/// The piece products of s for S = Q K^T and dP = dO V^T (max_order), smallest first (a + b descending): a[t], b[t]
/// for t < the count returned (<= 9). Also the count of segments of the split Q / K layouts (pack_q_split).
int split_pairs(const SplitPolicy& s, int a[9], int b[9]);
/// The same for the products whose left operand is P or dS, a[t] its piece (pv_max_order): O += P V, dV, dK, dQ.
int split_pairs_pv(const SplitPolicy& s, int a[9], int b[9]);

/// The path of a backward of p: forward_matmul's (f16: on the forward's pieces, kSplitF16), except f32 under
/// FLATATTN_CPU_F32_SPLIT, whose backward has no split path: fp32.
MatmulPath backward_matmul(const Problem& p);

/// Head dim padded for the AMX Q/K tiles (a multiple of kAmxK).
constexpr std::int64_t amx_kd(std::int64_t d) { return (d + kAmxK - 1) / kAmxK * kAmxK; }

// --- kernels (src/cpu/amx/kernels.cc, compiled with -mamx-tile -mamx-bf16 -mavx512bf16; call only
// after forward_matmul returned amx) ---

/// Loads this thread's tile configuration (8 tiles of 16 rows x 64 bytes). Call once per thread before
/// the kernels below, amx_end() after them.
void amx_begin();
/// Releases the tile state of this thread (TILERELEASE).
void amx_end();

/// s[i * lds + j] = scale * sum_i q(i, :) k(j, :) for rows i < rows, keys j < ncols (kb: K panels from
/// the tile's first key). rows a multiple of 16, ncols of 32.
void amx_qk(const std::uint16_t* q, std::int64_t rows, std::int64_t kd, const std::uint16_t* kb, std::int64_t ncols,
            float scale, float* s, std::int64_t lds);

/// pb[i * ld + j] = bf16(s[i * ld + j]) for i < rows, j < ncols (ncols a multiple of 32).
void amx_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* pb);

/// o[i * ldo + n] += sum_j p(i, j) v(j, n) for i < rows, n < dp, j < ncols (vb: V pairs from the tile's
/// first key). rows a multiple of 16, ncols of 32, dp of 16.
void amx_pv(const std::uint16_t* p, std::int64_t ldp, std::int64_t rows, std::int64_t ncols, const std::uint16_t* vb,
            std::int64_t dp, float* o, std::int64_t ldo);

/// t[j * ldt + i] = bf16(s[i * lds + j]) for i < rows, j < ncols (rows a multiple of 32, ncols of 16): the
/// transposed bf16 operand (P^T, dS^T) of the backward's dV and dK products. AVX-512 and AVX512-BF16
/// only (no tile state): both bf16 paths call it. pieces > 1 (SplitPolicy): t holds piece 0 of each element,
/// piece k at t + k * plane (the rule of bf16_piece, bit for bit).
void bf16_transpose(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, std::uint16_t* t,
                    std::int64_t ldt, int pieces = 1, std::int64_t plane = 0);

/// The bf16 forward's online-softmax step (src/cpu/amx/softmax.cc; AVX-512 and AVX512-BF16, no tile state:
/// both bf16 paths call it) on the logit rows i < rows of s (ncols a multiple of 32), in the natural-log
/// units of scale * s (scale > 0; 1 when s is already scaled): m_new = max(m[i], scale max_j s_ij),
/// p_ij = bf16(e^(scale s_ij - m_new)) (nearest even), l[i] = e^(m[i] - m_new) l[i] + sum_j e^(scale s_ij -
/// m_new) (the fp32 values, before rounding), and the O row o[i * ldo + 0 .. dp) times e^(m[i] - m_new)
/// unless the max held or l[i] was 0 (O still 0); m[i] = m_new. Start a row with m = -inf, l = 0 (FLAT: one
/// call per row over all its keys). Masked logits (-inf) give p = 0; a row all -inf so far keeps m = -inf.
/// pieces > 1 (SplitPolicy): P is written as that many bf16 pieces, piece k at p + k * plane.
void bf16_softmax_step(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t lds, float scale, float* m,
                       float* l, float* o, std::int64_t ldo, std::int64_t dp, std::uint16_t* p, std::int64_t ldp,
                       int pieces = 1, std::int64_t plane = 0);

/// dst[i] = bf16(src[i] * mul) for i < d, rounded as float_to_bf16 (src/core/half.h: nearest even, NaN kept
/// quiet), bit for bit (src/cpu/amx/softmax.cc; AVX-512 only: both bf16 paths' epilogue).
void bf16_store_row(const float* src, std::int64_t d, float mul, std::uint16_t* dst);

// --- AVX512-BF16 kernels (src/cpu/amx/dpbf16.cc, compiled with -mavx512bf16 when the compiler accepts
// it; call only after forward_matmul returned avx512bf16): the same contracts and layouts as amx_qk and
// amx_pv and amx_to_bf16, no tile state (this TU does not need the compiler's AMX flags). ---

void dpbf16_qk(const std::uint16_t* q, std::int64_t rows, std::int64_t kd, const std::uint16_t* kb,
               std::int64_t ncols, float scale, float* s, std::int64_t lds);
void dpbf16_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, std::uint16_t* pb);
void dpbf16_pv(const std::uint16_t* p, std::int64_t ldp, std::int64_t rows, std::int64_t ncols,
               const std::uint16_t* vb, std::int64_t dp, float* o, std::int64_t ldo);

// --- packers from bf16 inputs, or f32 inputs rounded to bf16 nearest even (the opt-in) (src/cpu/amx/pack.cc) ---

/// Q tile rows n0 .. n0+count, row-major [rows_pad][kd], zero padding.
void pack_q_bf16(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                 std::int64_t kd, std::uint16_t* dst);
/// All keys 0 .. count of one head as K panels (layout above), keys count .. count_pad zero.
void pack_k_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                 std::uint16_t* dst);
/// All keys 0 .. count of one head as V pairs (layout above), keys count .. count_pad zero.
void pack_v_vnni(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                 std::uint16_t* dst);
// The three above run on AVX-512 (src/cpu/amx/pack_avx512.cc: K panels as 16 x 16 word transposes, V pairs by
// widening and merging, f32 rounded in integer lanes); the scalar versions below (src/cpu/amx/pack.cc) are
// their reference, bit for bit (tests/cpu/test_amx.cc), and any x86-64 can run them.
void pack_q_bf16_ref(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                     std::int64_t kd, std::uint16_t* dst);
void pack_k_vnni_ref(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                     std::uint16_t* dst);
void pack_v_vnni_ref(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                     std::uint16_t* dst);

// --- split packers (src/cpu/amx/split.cc; scalar, any x86-64): the layouts above with the pieces of SplitPolicy ---

/// Q tile as pack_q_bf16 with inner dim kq = products * kd: segment t (t < products, split_pairs order) holds
/// piece a[t] of each row.
void pack_q_split(const Rows& src, std::int64_t n0, std::int64_t count, std::int64_t rows_pad, std::int64_t d,
                  std::int64_t kd, const SplitPolicy& s, std::uint16_t* dst);
/// K panels as pack_k_vnni with inner dim kq = products * kd: segment t holds piece b[t] of each key.
void pack_k_split(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t kd,
                  const SplitPolicy& s, std::uint16_t* dst);
/// V as pack_v_vnni, one plane per piece (piece k at dst + k * plane, plane >= count_pad * dp).
void pack_v_split(const Rows& src, std::int64_t count, std::int64_t count_pad, std::int64_t d, std::int64_t dp,
                  const SplitPolicy& s, std::uint16_t* dst, std::int64_t plane);
/// The P operand of fp32 probabilities s (rows x ncols, leading dim ld) as s.pieces planes: piece k of
/// s[i * ld + j] at pb[k * plane + i * ld + j].
void split_to_bf16(const float* s, std::int64_t rows, std::int64_t ncols, std::int64_t ld, const SplitPolicy& sp,
                   std::uint16_t* pb, std::int64_t plane);

}  // namespace flatattn::cpu
