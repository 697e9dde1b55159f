#include "src/check/features.h"

#include <stdexcept>
#include <string>

namespace flatattn::check {

namespace {

void causal(Case& c) { c.options.causal = true; }
void top_left(Case& c) { c.options.causal_align = CausalAlign::top_left; }
/// Block-sparse lists of block_q x block_kv (src/check/sparse_case.h).
void sparse(Case& c, int bq, int bkv, SparseCase::Pattern pattern, SparseCase::Rule rule, double density = 0.5,
            double full_share = 0.5) {
  c.sparse.block_q = bq, c.sparse.block_kv = bkv;
  c.sparse.pattern = pattern, c.sparse.rule = rule, c.sparse.density = density, c.sparse.full_share = full_share;
}
using SP = SparseCase::Pattern;
using SR = SparseCase::Rule;

void dropout(Case& c, float p) {
  c.options.dropout_p = p;
  c.options.dropout_seed = 0x9e3779b97f4a7c15ull;
  c.options.dropout_offset = 0x0000000300000040ull;
}

// clang-format off
constexpr Feature kFeatures[] = {
  // name               label                                     B   Nq   Nk  Hq Hkv  D
  {"plain",            "dense",                                   2,  97,  97, 2, 2, 64, [](Case&) {}, true},
  {"short_q",          "Nq < Nk",                                 2,  33, 130, 2, 2, 64, [](Case&) {}, false},
  {"causal",           "causal",                                  2,  97,  97, 2, 2, 64, causal, true},
  {"causal_br",        "causal bottom-right, Nq < Nk",            2,  70, 150, 2, 2, 64, causal, true},
  {"causal_br_tall",   "causal bottom-right, Nq > Nk: fully masked rows",
                                                                  2, 150,  70, 2, 2, 64, causal, false},
  {"causal_tl",        "causal top-left, Nq > Nk",                2, 150,  70, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c); }, false},
  {"causal_tl_wide",   "causal top-left, Nq < Nk",                2,  70, 150, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c); }, false},
  {"window",           "window (20,5)",                           2, 120, 140, 2, 2, 64,
   [](Case& c) { c.options.window = {20, 5}; }, true},
  {"sliding_window",   "window (32,0) causal",                    1, 150, 150, 2, 2, 64,
   [](Case& c) { causal(c), c.options.window = {32, 0}; }, true},
  {"window_tl",        "window (20,-1) top-left, Nq < Nk",        1,  40, 120, 2, 2, 64,
   [](Case& c) { top_left(c), c.options.window = {20, -1}; }, false},
  {"window_causal_tl", "window (16,0) causal top-left: rows past Nk + 16 see nothing",
                                                                  2, 130, 100, 2, 2, 64,
   [](Case& c) { causal(c), top_left(c), c.options.window = {16, 0}; }, false},
  {"window_diagonal",  "window (0,0), Nq > Nk: diagonal only, fully masked rows",
                                                                  2,  90,  50, 2, 2, 64,
   [](Case& c) { c.options.window = {0, 0}; }, false},
  {"softcap",          "softcap 5, sd 2, causal",                 2,  97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.options.softcap = 5.f, c.input_sd = 2.0; }, true},
  {"softcap_window",   "softcap 30, sd 3, window (31,5)",         1, 120, 140, 2, 2, 64,
   [](Case& c) { c.options.softcap = 30.f, c.input_sd = 3.0, c.options.window = {31, 5}; }, false},
  {"gqa",              "GQA 6:2, D = 80, causal",                 2,  97,  97, 6, 2, 80,
   [](Case& c) { c.hq = 6, c.hkv = 2, causal(c); }, true},
  {"mqa",              "MQA 4:1, D = 40",                         2,  60, 110, 4, 1, 40,
   [](Case& c) { c.hq = 4, c.hkv = 1; }, false},
  {"varlen",           "varlen incl. empty sequences, causal",    0,   0,   0, 4, 2, 64,
   [](Case& c) {
     causal(c);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 5};  // an empty query, a length-1, an empty key sequence
     c.seqlens_k = {5, 1, 0, 120, 5};
     c.batch = 5;
   }, true},
  {"strided",          "strided (B,H,N,D) + padding, window (30,-1)",
                                                                  2,  97,  97, 4, 2, 64,
   [](Case& c) { c.strided = true, c.options.window = {30, -1}; }, true},
  {"large_logits",     "large logits (sd 100: |S| ~ 1e4), causal", 2, 97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.input_sd = 100.0; }, false},
  {"fully_masked",     "causal window (3,0), Nq > Nk: rows 0..39 see nothing",
                                                                  2,  60,  20, 2, 2, 64,
   [](Case& c) { causal(c), c.options.window = {3, 0}; }, false},
  {"negative_scale",   "negative scale -0.2",                     2,  64,  96, 2, 2, 64,
   [](Case& c) { c.options.softmax_scale = -0.2f; }, false},
  // Head dims that are not multiples of 8: CUDA stages them through a zero-padded workspace
  // (src/cuda/staging.h), strided ones with rows that are not 16-byte aligned too.
  {"d59",              "D = 59, causal",                          2,  97,  97, 2, 2, 59, causal, true},
  {"d111_gqa",         "D = 111, GQA 6:2",                        2,  80,  97, 6, 2, 111,
   [](Case& c) { c.hq = 6, c.hkv = 2; }, false},
  {"d199_causal",      "D = 199 (staged to 200, kernel 256), causal bottom-right, Nq < Nk",
                                                                  1,  70, 150, 2, 2, 199, causal, false},
  {"d1",               "D = 1",                                   2,  33,  70, 2, 1, 1, [](Case&) {}, false},
  {"d3_varlen",        "D = 3, varlen incl. empty sequences, window (20,5)",
                                                                  0,   0,   0, 4, 2, 3,
   [](Case& c) {
     c.options.window = {20, 5};
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90};
     c.seqlens_k = {5, 1, 0, 110};
     c.batch = 4;
   }, false},
  {"d59_strided",      "D = 59, strided (B,H,N,D) + padding: rows not 16-byte aligned",
                                                                  2,  97,  97, 4, 2, 59,
   [](Case& c) { c.strided = true; }, false},
  {"d111_det",         "D = 111, deterministic backward, causal", 2,  97,  97, 2, 1, 111,
   [](Case& c) { causal(c), c.options.deterministic = true; }, false},
  {"alibi",            "ALiBi slopes (Hq), Nq < Nk",              2,  70, 150, 4, 2, 64,
   [](Case& c) { c.alibi = 1; }, true},
  {"alibi_causal_varlen", "ALiBi slopes (B, Hq), causal, varlen incl. empty sequences",
                                                                  0,   0,   0, 4, 2, 64,
   [](Case& c) {
     c.alibi = 2, causal(c);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 120};
     c.seqlens_k = {5, 1, 0, 120, 60};
     c.batch = 5;
   }, true},
  {"alibi_causal_tl",  "ALiBi, causal top-left, Nq > Nk (bias to the bottom-right diagonal)",
                                                                  2, 150,  70, 2, 2, 64,
   [](Case& c) { c.alibi = 1, causal(c), top_left(c); }, false},
  {"alibi_window_neg", "ALiBi x4, window (20,5), negative scale -0.2", 1, 120, 140, 2, 2, 64,
   [](Case& c) { c.alibi = 2, c.alibi_scale = 4.0, c.options.window = {20, 5}, c.options.softmax_scale = -0.2f; }, false},
  {"alibi_neg_slope",  "ALiBi slopes negated (allowed; the CUDA split form's other sign), causal, Nq < Nk",
                                                                  2,  70, 150, 4, 2, 64,
   [](Case& c) { c.alibi = 2, c.alibi_scale = -1.0, causal(c); }, false},
  {"sinks",            "attention sinks, causal, GQA 4:2",        2,  97,  97, 4, 2, 64,
   [](Case& c) { c.sinks = true, causal(c); }, true},
  {"sinks_window",     "sinks, softcap 30, sd 3, window (31,5)",  1, 120, 140, 2, 2, 64,
   [](Case& c) { c.sinks = true, c.options.softcap = 30.f, c.input_sd = 3.0, c.options.window = {31, 5}; }, false},
  {"sinks_fully_masked", "sinks (mean 4), causal window (3,0), Nq > Nk: rows 0..39 see only the sink",
                                                                  2,  60,  20, 2, 2, 64,
   [](Case& c) { c.sinks = true, c.sink_mean = 4.0, causal(c), c.options.window = {3, 0}; }, true},
  {"sinks_alibi_varlen", "sinks and ALiBi (Hq), varlen, window (16,-1)", 0, 0, 0, 4, 1, 64,
   [](Case& c) {
     c.sinks = true, c.alibi = 1, c.options.window = {16, -1};
     c.varlen = true;
     c.seqlens_q = {33, 0, 80};
     c.seqlens_k = {50, 7, 64};
     c.batch = 3;
   }, false},
  {"sinks_alibi_d59",  "sinks and ALiBi (B, Hq), D = 59 (staged on CUDA), causal", 2, 97, 97, 2, 1, 59,
   [](Case& c) { c.sinks = true, c.alibi = 2, causal(c); }, false},
  // Dropout: (seed, offset) with high words set, so both halves of the Philox key and counter are exercised.
  {"dropout",          "dropout 0.17",                            2,  97, 110, 2, 2, 64,
   [](Case& c) { dropout(c, 0.17f); }, true},
  {"dropout_causal",   "dropout 0.1, causal bottom-right, Nq < Nk", 2, 70, 150, 2, 2, 64,
   [](Case& c) { causal(c), dropout(c, 0.1f); }, true},
  {"dropout_softcap",  "dropout 0.5, softcap 5, sd 2, causal",    2,  97,  97, 2, 2, 64,
   [](Case& c) { causal(c), c.options.softcap = 5.f, c.input_sd = 2.0, dropout(c, 0.5f); }, true},
  {"dropout_window_gqa", "dropout 0.9, window (20,5), GQA 6:2, D = 80", 1, 120, 140, 6, 2, 80,
   [](Case& c) { c.hq = 6, c.hkv = 2, c.options.window = {20, 5}, dropout(c, 0.9f); }, false},
  {"dropout_varlen",   "dropout 0.2, varlen incl. empty sequences, causal top-left", 0, 0, 0, 4, 2, 64,
   [](Case& c) {
     causal(c), top_left(c), dropout(c, 0.2f);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 70};
     c.seqlens_k = {5, 1, 0, 120, 70};
     c.batch = 5;
   }, false},
  // A context-parallel ring block: the call's rows and keys sit at (row0, col0) of a longer sequence.
  {"dropout_position", "dropout 0.3 at (dropout_row0 1037, dropout_col0 4096), causal top-left, GQA 4:2", 2, 90, 100, 4, 2, 64,
   [](Case& c) { c.hq = 4, c.hkv = 2, causal(c), top_left(c), dropout(c, 0.3f);
                 c.options.dropout_row0 = 1037, c.options.dropout_col0 = 4096; }, true},
  // Ulysses' head shard (query heads 3, 4 of 8) of sequences 5, 6 of the stream at a ring position: the mask of
  // (b + dropout_batch0, h + dropout_head0) of a stream of dropout_heads query heads.
  {"dropout_slot",     "dropout 0.3 as sequences 5.. and heads 3.. of 8 (dropout_batch0/head0/heads), at row 64 col 128, GQA 2:1",
                                                                  2,  70,  80, 2, 1, 64,
   [](Case& c) { c.hq = 2, c.hkv = 1, dropout(c, 0.3f);
                 c.options.dropout_batch0 = 5, c.options.dropout_head0 = 3, c.options.dropout_heads = 8;
                 c.options.dropout_row0 = 64, c.options.dropout_col0 = 128; }, true},
  // A document piece of the ring over packed documents: varlen, each sequence numbered from sequence 3 on.
  {"dropout_slot_varlen", "dropout 0.2, varlen, sequences numbered from dropout_batch0 = 3, causal top-left", 0, 0, 0, 4, 2, 64,
   [](Case& c) {
     causal(c), top_left(c), dropout(c, 0.2f);
     c.varlen = true;
     c.seqlens_q = {33, 0, 70};
     c.seqlens_k = {33, 5, 70};
     c.batch = 3;
     c.options.dropout_batch0 = 3;
   }, false},
  {"dropout_sinks",    "dropout 0.1 with sinks (mean 2), causal window (24,0), GQA 4:2, D = 59 (staged on CUDA)",
                                                                  2,  90,  90, 4, 2, 59,
   [](Case& c) { c.hq = 4, c.hkv = 2, causal(c), c.options.window = {24, 0}, dropout(c, 0.1f);
                 c.sinks = true, c.sink_mean = 2.0; }, false},
  // Softcap where tanh saturates (|scale s| ~ 600 against c = 30, the few keys with |s| < 9 c carry the
  // gradient): its derivative sech^2 must not come from 1 - tanh^2 (issue 20, item 6).
  {"softcap_large_logits", "softcap 30, sd 24 (|scale s| ~ 600: tanh saturated), causal", 2, 97, 97, 2, 2, 64,
   [](Case& c) { causal(c), c.options.softcap = 30.f, c.input_sd = 24.0; }, false},
  // Additive bias with gradient (dbias): the full (B, Hq, Nq, Nk) bias and broadcast shapes, whose gradient is a
  // reduction (atomics on CUDA by default, a fixed-order sum in deterministic mode), in every bias dtype.
  {"bias",             "bias (B, Hq, Nq, Nk), Nq < Nk",           2,  70, 150, 2, 2, 64,
   [](Case& c) { c.bias_dims = "bhq"; }, true},
  {"bias_heads_causal_gqa", "bias (1, Hq, Nq, Nk) f32, causal, GQA 4:2", 2, 97, 97, 4, 2, 64,
   [](Case& c) { c.bias_dims = "hq", c.bias_dtype = DType::f32, causal(c), c.hq = 4, c.hkv = 2; }, true},
  {"bias_shared_window", "bias (1, 1, Nq, Nk) bf16 strided, 10 % -inf, window (20,5)", 2, 120, 140, 2, 2, 64,
   [](Case& c) {
     c.bias_dims = "q", c.bias_dtype = DType::bf16, c.bias_strided = true, c.bias_masked = 0.1;
     c.options.window = {20, 5};
   }, false},
  {"bias_keypad_varlen", "bias (B, 1, 1, Nk) key padding (-inf), varlen incl. empty sequences, causal",
                                                                  0,   0,   0, 4, 2, 64,
   [](Case& c) {
     c.bias_dims = "b", c.bias_masked = 0.2, causal(c);
     c.varlen = true;
     c.seqlens_q = {0, 1, 37, 90, 60};
     c.seqlens_k = {5, 1, 0, 120, 60};
     c.batch = 5;
   }, false},
  {"bias_det_sinks",   "bias (B, 1, Nq, Nk) f16 sd 3, deterministic, sinks, causal top-left, D = 59",
                                                                  2,  90,  80, 4, 2, 59,
   [](Case& c) {
     c.bias_dims = "bq", c.bias_dtype = DType::f16, c.bias_sd = 3.0, c.options.deterministic = true;
     c.sinks = true, causal(c), top_left(c);
   }, false},
  // dbias by rows from the staged dS tile (src/cuda/common/dbias.cuh): (1, Hq, 1, Nk) sums the tile's rows per key
  // before one reduction per key; Nk a multiple of 8 but not of the key block (a partial block of whole chunks).
  {"bias_rows_h",      "bias (1, Hq, 1, Nk) f16 (its rows summed per key), GQA 4:2, Nk = 200", 2, 77, 200, 4, 2, 64,
   [](Case& c) { c.bias_dims = "h", c.bias_dtype = DType::f16, c.hq = 4, c.hkv = 2; }, false},
  // Block-sparse (issue 16, include/flatattn/sparse.h): 128 x 128 blocks (a multiple of every CUDA tile), so
  // N ~ 300 gives 3 x 3 blocks; the lists differ per (b, h) unless broadcast.
  {"sparse_random",    "block-sparse 128x128 random 50 %, partial + full, causal band in partial blocks",
                                                                  2, 300, 330, 2, 2, 64,
   [](Case& c) { causal(c), sparse(c, 128, 128, SP::random, SR::band); }, true},
  {"sparse_bits_gqa",  "block-sparse random 50 %, random bits in partial blocks, GQA 4:2, q lists given",
                                                                  2, 300, 300, 4, 2, 64,
   [](Case& c) { c.hq = 4, c.hkv = 2, sparse(c, 128, 128, SP::random, SR::bits), c.sparse.give_q = true; }, true},
  {"sparse_empty_rows", "block-sparse 10 %: empty rows of blocks (O = 0, LSE = -inf), bits",
                                                                  2, 384, 384, 2, 1, 64,
   [](Case& c) { sparse(c, 128, 128, SP::random, SR::bits, 0.1); }, true},
  {"sparse_full_only", "block-sparse 25 %, full blocks only, broadcast lists (1, 1, NQB)",
                                                                  2, 300, 300, 2, 2, 64,
   [](Case& c) { sparse(c, 128, 128, SP::random, SR::band, 0.25, 1.0), c.sparse.per_head = false; }, false},
  {"sparse_partial_only", "block-sparse 100 %, partial blocks only, random bits",
                                                                  1, 260, 290, 2, 2, 64,
   [](Case& c) { sparse(c, 128, 128, SP::random, SR::bits, 1.0, 0.0); }, false},
  {"sparse_document",  "FlexAttention document mask (3 documents) as block lists + bits",
                                                                  1, 384, 384, 2, 2, 64,
   [](Case& c) { sparse(c, 128, 128, SP::document, SR::bits); }, true},
  {"sparse_prefix_lm", "FlexAttention prefix-LM mask (prefix 150) as block lists + bits, softcap 30",
                                                                  1, 300, 300, 2, 2, 64,
   [](Case& c) { sparse(c, 128, 128, SP::prefix_lm, SR::bits), c.sparse.window = 150, c.options.softcap = 30.f; }, false},
  {"sparse_sliding",   "FlexAttention sliding window 100 (causal) as block lists + bits, dropout 0.1",
                                                                  1, 300, 300, 2, 2, 64,
   [](Case& c) { sparse(c, 128, 128, SP::sliding, SR::bits), c.sparse.window = 100, dropout(c, 0.1f); }, false},
  {"longformer",       "local + global (Longformer): window (40,40), globals at 0, 150, 299, lists derived",
                                                                  1, 300, 300, 2, 2, 64,
   [](Case& c) {
     c.options.window = {40, 40};
     c.sparse.derive = true, c.sparse.rule = SR::local_global, c.sparse.globals = {0, 150, 299};
   }, true},
  {"longformer_causal_varlen", "local + global, causal window (32,0), globals 0, 5, 200, varlen, GQA 4:2",
                                                                  0,   0,   0, 4, 2, 64,
   [](Case& c) {
     causal(c), c.options.window = {32, 0};
     c.sparse.derive = true, c.sparse.rule = SR::local_global, c.sparse.globals = {0, 5, 200};
     c.varlen = true;
     c.seqlens_q = {300, 0, 170};
     c.seqlens_k = {300, 9, 170};
     c.batch = 3;
   }, false},
  {"bigbird",          "BigBird: random blocks 30 % + window (20,20) + globals 3, 130 in partial blocks, sinks",
                                                                  2, 300, 300, 2, 2, 64,
   [](Case& c) {
     c.options.window = {20, 20}, c.sinks = true;
     sparse(c, 128, 128, SP::random, SR::local_global, 0.3, 0.3), c.sparse.globals = {3, 130};
   }, false},
};
// clang-format on

}  // namespace

std::span<const Feature> features() { return kFeatures; }

const Feature& feature(std::string_view name) {
  for (const Feature& f : kFeatures)
    if (name == f.name) return f;
  throw std::invalid_argument("no feature named " + std::string(name));
}

Case feature_case(const Feature& f, DType dt) {
  Case c;
  c.dtype = dt;
  c.batch = f.batch, c.nq = f.nq, c.nk = f.nk, c.hq = f.hq, c.hkv = f.hkv, c.d = f.d;
  c.options.return_lse = true;
  f.apply(c);
  return c;
}

Case with_feature(Case base, std::string_view name) {
  feature(name).apply(base);
  return base;
}

}  // namespace flatattn::check
