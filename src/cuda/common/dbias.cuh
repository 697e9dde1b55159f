// The additive bias's gradient on the backward kernels: dbias = dS, the logit's gradient (BiasScore,
// src/core/variant.h). Both backward kernels already stage dS of each (query block, key block) step in shared
// memory in their 16-bit element type E, for the dQ product (sm80: [query][key], sm90: dS^T, [key][query]);
// store_dbias_tile copies that tile to dbias by rows after the step's barrier, so dbias costs no extra shared
// memory and no registers across the products. Each element of a visible (b, h, i, j) is written once per
// (b, h) by the CTA that owns its key block:
//   - a bias of full (B, Hq, Nq) (or the deterministic mode's (B, Hq, Nq, Nk) fp32 workspace): plain stores,
//     16 bytes (8 keys of one query) per store where the row stride and base allow it;
//   - a broadcast bias (BwdParams::dbias_atomic, its fp32 workspace): on sm_90 16-byte vector reductions
//     (red.global.add.v4.f32, PTX ISA 8.1), two per 8 keys; before sm_90 scalar reductions, but in row order
//     (a warp's 32 consecutive floats: 4 sectors per instruction, against 8 half-used sectors per instruction
//     when a fragment's lanes spread over 8 rows);
//   - a row stride of 0 (Mq = 1: the bias has one query row): the tile's rows are summed per key in shared
//     memory first (Threads / BlockN threads per key), then one reduction per key and thread: BlockM / 2 times
//     fewer reductions;
//   - a full bias outside varlen: the CTA also writes the zeros of the rows its key block never visits (causal,
//     window), so the dispatch needs no zeroing pass over all of dbias before the kernel (zero_unvisited_dbias).
// The values are dS rounded to E, those the dQ and dK products use (the fp64 oracle's rounded mode rounds dS
// to the input dtype the same way: src/reference/reference.cc), converted to the bias's dtype.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "src/cuda/common/arch.cuh"
#include "src/cuda/common/bwd_params.h"

namespace flatattn::cuda {

/// x into dbias at element offset `off`: an fp32 reduction (dbias_atomic), else a store in dbias_dtype.
FLATATTN_DEVICE void dbias_put(const BwdParams& p, std::int64_t off, float x) {
  if (p.dbias_atomic) {
    atomicAdd(static_cast<float*>(p.dbias) + off, x);
  } else if (p.dbias_dtype == 0) {
    static_cast<float*>(p.dbias)[off] = x;
  } else if (p.dbias_dtype == 2) {
    static_cast<__nv_bfloat16*>(p.dbias)[off] = __float2bfloat16_rn(x);
  } else {
    static_cast<__half*>(p.dbias)[off] = __float2half_rn(x);
  }
}

/// The 16-bit element `u` of type E as a float.
template <class E>
FLATATTN_DEVICE float dbias_elem(std::uint32_t u) {
  if constexpr (E::kIsBf16) {
    return __uint_as_float(u << 16);
  } else {
    return __half2float(__ushort_as_half(static_cast<unsigned short>(u)));
  }
}

/// a[0..3] += x (relaxed, gpu scope); a is 16-byte aligned. sm_90: one vector reduction; before: four.
FLATATTN_DEVICE void red_add4(float* a, float x, float y, float z, float w) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("red.global.add.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"l"(a), "f"(x), "f"(y), "f"(z), "f"(w) : "memory");
#else
  atomicAdd(a, x);
  atomicAdd(a + 1, y);
  atomicAdd(a + 2, z);
  atomicAdd(a + 3, w);
#endif
}

/// The staged dS tile of one step (`tile`: the Tile layout, common/smem_tile.cuh, of E elements; KeyMajor: rows
/// are the BlockN keys and columns the BlockM queries, else rows are queries) into dbias for (sequence b, query
/// head h), queries m0 + [0, BlockM), keys n0 + [0, BlockN). Every thread of the CTA calls it after the barrier
/// that publishes the tile and before the next step overwrites it. Nothing outside the sequence's rows and keys
/// (nq_rows, nk) or the bias's extents is written.
template <bool KeyMajor, class Tile, class E, int BM, int BN, int Threads>
FLATATTN_DEVICE void store_dbias_tile(const BwdParams& p, const unsigned char* tile, int b, int h, int m0, int n0,
                                      int nq_rows, int nk, int tid) {
  static_assert(BN % 8 == 0 && BM % 16 == 0, "8-key chunks, query pairs");
  const int rows = min(min(nq_rows, p.f.var.bias_nq) - m0, BM);  // valid rows (queries) of the tile
  const int keys = min(min(nk, p.f.var.bias_nk) - n0, BN);       // valid keys
  if (rows <= 0 || keys <= 0) return;
  const std::int64_t slice = b * p.dbias_b + h * p.dbias_h;
  // element (query r, key j) of the tile: its byte offset
  auto at = [&](int r, int j) -> std::uint32_t {
    return KeyMajor ? Tile::offset(j, r & ~7) + (r & 7) * 2 : Tile::offset(r, j & ~7) + (j & 7) * 2;
  };
  auto elem = [&](int r, int j) { return dbias_elem<E>(*reinterpret_cast<const std::uint16_t*>(tile + at(r, j))); };

  if (p.dbias_i == 0) {
    // One query row in dbias (Mq = 1; or Nq = 1, where rows <= 1): the tile's rows summed per key, kG threads per
    // key (each a strided subset of rows, four independent sums), then one reduction or store per thread and key.
    // A plain store (rows <= 1) comes only from the thread that holds the row.
    constexpr int kG = Threads >= BN ? Threads / BN : 1;
    for (int u = tid; u < BN * kG; u += Threads) {
      const int j = u % BN, g = u / BN;
      if (j >= keys) continue;
      float a[4] = {0.f, 0.f, 0.f, 0.f};
      if constexpr (KeyMajor) {  // 16-byte reads of 8 queries: 8 lanes cover every bank (the swizzle)
        for (int r0 = 8 * g; r0 < rows; r0 += 8 * kG) {
          const uint4 v = *reinterpret_cast<const uint4*>(tile + Tile::offset(j, r0));
          const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
          for (int k = 0; k < 8; ++k)
            if (r0 + k < rows) a[k % 4] += dbias_elem<E>(k & 1 ? w[k / 2] >> 16 : w[k / 2] & 0xffffu);
        }
        if (8 * g >= rows) continue;
      } else {  // lanes read consecutive keys of one row
        int r = g;
        for (; r + 3 * kG < rows; r += 4 * kG) {
#pragma unroll
          for (int k = 0; k < 4; ++k) a[k] += elem(r + k * kG, j);
        }
        for (; r < rows; r += kG) a[0] += elem(r, j);
        if (g >= rows) continue;
      }
      dbias_put(p, slice + (n0 + j), (a[0] + a[1]) + (a[2] + a[3]));
    }
    return;
  }

  // 16-byte stores (or reductions) need the slice base and the row stride 16-byte aligned (n0 is a multiple of 8).
  const bool f32 = p.dbias_atomic || p.dbias_dtype == 0;
  const int es = f32 ? 4 : 2;
  const bool vec = ((reinterpret_cast<std::uintptr_t>(p.dbias) + slice * es) % 16 == 0) && (p.dbias_i * es) % 16 == 0;
  constexpr int kOwnDtype = E::kIsBf16 ? 2 : 1;
  // 8 keys of query r from key 8 kc, as the 16-bit words v (key 8 kc + 2 t in the low half of word t)
  auto put = [&](int r, int kc, const uint4& v) {
    if (r >= rows) return;
    const int j0 = 8 * kc;
    const std::int64_t off =
        slice + (static_cast<unsigned>(m0 + r) * static_cast<unsigned>(p.dbias_i) + static_cast<unsigned>(n0 + j0));
    const std::uint32_t w[4] = {v.x, v.y, v.z, v.w};
    float x[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) x[k] = dbias_elem<E>(k & 1 ? w[k / 2] >> 16 : w[k / 2] & 0xffffu);
    if (vec && j0 + 8 <= keys) {
      if (p.dbias_atomic) {
        float* a = static_cast<float*>(p.dbias) + off;
        red_add4(a, x[0], x[1], x[2], x[3]);
        red_add4(a + 4, x[4], x[5], x[6], x[7]);
      } else if (p.dbias_dtype == 0) {
        float4* a = reinterpret_cast<float4*>(static_cast<float*>(p.dbias) + off);
        a[0] = make_float4(x[0], x[1], x[2], x[3]);
        a[1] = make_float4(x[4], x[5], x[6], x[7]);
      } else if (p.dbias_dtype == kOwnDtype) {
        *reinterpret_cast<uint4*>(static_cast<std::uint16_t*>(p.dbias) + off) = v;
      } else {  // the other 16-bit type: converted from E
        const bool bf = p.dbias_dtype == 2;
        std::uint32_t o[4];
#pragma unroll
        for (int t = 0; t < 4; ++t) {
          if (bf) {
            __nv_bfloat162 c = __floats2bfloat162_rn(x[2 * t], x[2 * t + 1]);
            o[t] = *reinterpret_cast<std::uint32_t*>(&c);
          } else {
            __half2 c = __floats2half2_rn(x[2 * t], x[2 * t + 1]);
            o[t] = *reinterpret_cast<std::uint32_t*>(&c);
          }
        }
        *reinterpret_cast<uint4*>(static_cast<std::uint16_t*>(p.dbias) + off) = make_uint4(o[0], o[1], o[2], o[3]);
      }
    } else {
#pragma unroll
      for (int k = 0; k < 8; ++k)
        if (j0 + k < keys) dbias_put(p, off + k, x[k]);
    }
  };

  if constexpr (KeyMajor) {
    // dS^T: a lane reads one 4-byte word (queries 2 qp, 2 qp + 1) of each of the 8 key rows of chunk kc and
    // transposes them into the two queries' 8-key chunks. Lanes 2l and 2l + 1 take chunks 2c and 2c + 1 of the same
    // query pair, so each query row gets 32 contiguous bytes per lane pair: whole 32-byte sectors per store or
    // reduction (half as many L2 requests as one chunk per lane), for 2-way bank conflicts on the word loads (the
    // two chunks' rows share their swizzle phase).
    static_assert((BN / 8) % 2 == 0, "chunk pairs");
    constexpr int kPairs = BM / 2, kUnits = kPairs * (BN / 8);
    for (int u = tid; u < kUnits; u += Threads) {
      const int kc = 2 * (u / (2 * kPairs)) + (u & 1), qp = (u >> 1) % kPairs, r = 2 * qp;
      if (r >= rows) continue;
      std::uint32_t w[8];
#pragma unroll
      for (int k = 0; k < 8; ++k) w[k] = *reinterpret_cast<const std::uint32_t*>(tile + at(r, 8 * kc + k));
      put(r, kc, make_uint4(__byte_perm(w[0], w[1], 0x5410), __byte_perm(w[2], w[3], 0x5410),
                            __byte_perm(w[4], w[5], 0x5410), __byte_perm(w[6], w[7], 0x5410)));
      put(r + 1, kc, make_uint4(__byte_perm(w[0], w[1], 0x7632), __byte_perm(w[2], w[3], 0x7632),
                                __byte_perm(w[4], w[5], 0x7632), __byte_perm(w[6], w[7], 0x7632)));
    }
  } else {
    // [query][key]: consecutive lanes take consecutive 8-key chunks of a row (one 16-byte load each).
    constexpr int kChunks = BN / 8, kUnits = BM * kChunks;
    for (int u = tid; u < kUnits; u += Threads) {
      const int r = u / kChunks, kc = u % kChunks;
      if (r >= rows) break;  // u grows with r
      put(r, kc, *reinterpret_cast<const uint4*>(tile + Tile::offset(r, 8 * kc)));
    }
  }
}

/// Zeros into dbias for (sequence b, query head h), queries [r0, r1), keys n0 + [0, BN): the rows of a key block
/// that no step of its CTA visits (their dS is 0), when the dispatch leaves them to the kernel (dbias_zero_rest:
/// a full bias outside varlen) instead of zeroing all of dbias first. Plain stores in dbias_dtype, 16 bytes each
/// where aligned; every thread of the CTA calls it.
template <int BN, int Threads>
FLATATTN_DEVICE void zero_dbias_rows(const BwdParams& p, int b, int h, int r0, int r1, int n0, int nk, int tid) {
  r1 = min(r1, p.f.var.bias_nq);
  const int keys = min(min(nk, p.f.var.bias_nk) - n0, BN);
  if (r1 <= r0 || keys <= 0) return;
  const std::int64_t slice = b * p.dbias_b + h * p.dbias_h;
  const int es = p.dbias_dtype == 0 ? 4 : 2;
  const bool vec = ((reinterpret_cast<std::uintptr_t>(p.dbias) + slice * es) % 16 == 0) && (p.dbias_i * es) % 16 == 0;
  constexpr int kChunks = BN / 8;  // 8 keys: one 16-byte store (16-bit) or two (f32)
  for (int u = tid; u < (r1 - r0) * kChunks; u += Threads) {
    const int r = r0 + u / kChunks, j0 = 8 * (u % kChunks);
    if (j0 >= keys) continue;
    const std::int64_t off =
        slice + (static_cast<unsigned>(r) * static_cast<unsigned>(p.dbias_i) + static_cast<unsigned>(n0 + j0));
    if (vec && j0 + 8 <= keys) {
      uint4* a = reinterpret_cast<uint4*>(static_cast<unsigned char*>(p.dbias) + off * es);
      a[0] = make_uint4(0u, 0u, 0u, 0u);
      if (es == 4) a[1] = make_uint4(0u, 0u, 0u, 0u);
    } else {
      for (int k = 0; k < 8 && j0 + k < keys; ++k) dbias_put(p, off + k, 0.f);
    }
  }
}

/// zero_dbias_rows for every query head of the CTA's group (first query head h0) over the rows outside the visited
/// query blocks [first, last] of BlockM rows (all rows when none is visited), up to nq_rows.
template <int BM, int BN, int Threads>
FLATATTN_DEVICE void zero_unvisited_dbias(const BwdParams& p, int b, int h0, int group, int first, int last, int n0,
                                          int nq_rows, int nk, int tid) {
  for (int hh = 0; hh < group; ++hh) {
    if (last < first) {
      zero_dbias_rows<BN, Threads>(p, b, h0 + hh, 0, nq_rows, n0, nk, tid);
    } else {
      zero_dbias_rows<BN, Threads>(p, b, h0 + hh, 0, first * BM, n0, nk, tid);
      zero_dbias_rows<BN, Threads>(p, b, h0 + hh, (last + 1) * BM, nq_rows, n0, nk, tid);
    }
  }
}

}  // namespace flatattn::cuda
