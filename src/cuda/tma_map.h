// Host side of the Hopper bulk tensor copy engine (TMA) for the warp-specialized sm90 forward: the CUtensorMap of
// one (rows, D) operand of a (B, N, H, D) problem in any element strides, encoded with cuTensorMapEncodeTiled
// (reached through cudaGetDriverEntryPointByVersion, so no link against libcuda): dims (D, N, H, B) innermost
// first, a box of 64 columns x box_rows rows with the 128-byte swizzle, i.e. exactly one 64-column panel of
// SmemTile<box_rows, D> (common/smem_tile.cuh); coordinates past the tensor (rows >= N, columns >= the caller's D)
// are filled with zeros. The device side is src/cuda/sm90/tma.cuh.
#pragma once

#include <cuda.h>  // CUtensorMap and its enums (types only; the function comes from the runtime's entry point)
#include <cuda_runtime.h>

#include <cstdint>
#include <optional>
#include <string>

#include "flatattn/error.h"

namespace flatattn::cuda {

/// One operand of the problem as TMA sees it: 16-bit elements at `base`, (cols = the caller's D, rows, heads,
/// batch) with element strides for rows, heads and batch (columns contiguous).
struct TileMapShape {
  const void* base = nullptr;
  std::int64_t cols = 0, rows = 0, heads = 0, batch = 0;
  std::int64_t s_row = 0, s_head = 0, s_batch = 0;  ///< elements
  int box_rows = 0;                                  ///< rows per load (<= 256); the box is 64 columns wide
  const char* what = "q";                            ///< the argument named by errors
};

/// Stride i (0 rows, 1 heads, 2 batch) of `s` in bytes; a dimension of size 1 is never stepped, so any legal
/// stride serves (its packed one, rounded up to 16 bytes).
inline std::int64_t tile_map_stride(const TileMapShape& s, int i) {
  const std::int64_t st[3] = {s.s_row * 2, s.s_head * 2, s.s_batch * 2};
  const std::int64_t dim[3] = {s.rows, s.heads, s.batch};
  const std::int64_t packed[3] = {s.cols * 2, s.cols * 2 * s.rows, s.cols * 2 * s.rows * s.heads};
  return dim[i] == 1 ? (packed[i] + 15) / 16 * 16 : st[i];
}

/// Why the copy engine cannot map `s` (CUDA Driver API, cuTensorMapEncodeTiled: 16-byte aligned base, strides
/// multiples of 16 bytes below 2^40, dims in [1, 2^32], box dims in [1, 256]): the value, the limit and the fix of
/// the Error make_tile_map throws; nullopt when it can.
struct TileMapIssue {
  std::string value, limit, fix;
};
inline std::optional<TileMapIssue> tile_map_issue(const TileMapShape& s) {
  const auto addr = reinterpret_cast<std::uintptr_t>(s.base);
  if (addr % 16 != 0)
    return TileMapIssue{"data pointer " + std::to_string(addr) + " (" + std::to_string(addr % 16) + " bytes past 16-byte alignment)",
                        "the copy engine needs a 16-byte aligned base", "pass 16-byte aligned tensors or set FLATATTN_CUDA_SM90_WS=0"};
  const std::int64_t dims[4] = {s.cols, s.rows, s.heads, s.batch};
  for (int i = 0; i < 4; ++i)
    if (dims[i] < 1 || dims[i] > (std::int64_t{1} << 32))
      return TileMapIssue{"dimension " + std::to_string(i) + " = " + std::to_string(dims[i]), "each dimension in [1, 2^32]",
                          "call with non-empty tensors"};
  const char* names[3] = {"sequence", "head", "batch"};
  for (int i = 0; i < 3; ++i) {
    const std::int64_t st = tile_map_stride(s, i);
    if (st <= 0 || st % 16 != 0 || st >= (std::int64_t{1} << 40))
      return TileMapIssue{std::string(names[i]) + " stride " + std::to_string(st / 2) + " elements",
                          "the copy engine needs strides that are positive multiples of 8 elements (16 bytes) below 2^39",
                          "make the tensor contiguous (or pad its rows to a multiple of 8 elements), or set FLATATTN_CUDA_SM90_WS=0"};
  }
  if (s.box_rows < 1 || s.box_rows > 256) return TileMapIssue{"box of " + std::to_string(s.box_rows) + " rows", "at most 256", "report it"};
  return std::nullopt;
}

/// The tensor map of `s` (bf16 when `bf16`, else f16), checked against the copy engine's rules first
/// (tile_map_issue). A violation throws an Error naming the argument; an encode failure throws with the
/// driver's code.
inline CUtensorMap make_tile_map(const TileMapShape& s, bool bf16) {
  if (const std::optional<TileMapIssue> i = tile_map_issue(s))
    throw Error(Error::Kind::unsupported, s.what, i->value, i->limit + " (the sm90 warp-specialized TMA forward)", i->fix);
  const std::int64_t dims[4] = {s.cols, s.rows, s.heads, s.batch};
  const std::int64_t st[3] = {tile_map_stride(s, 0), tile_map_stride(s, 1), tile_map_stride(s, 2)};

  using Encode = decltype(&cuTensorMapEncodeTiled);
  static Encode encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    const cudaError_t e = cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q);
    if (e != cudaSuccess || q != cudaDriverEntryPointSuccess) fn = nullptr;
    return reinterpret_cast<Encode>(fn);
  }();
  if (encode == nullptr)
    throw Error(Error::Kind::unsupported, "q.device", "a driver without cuTensorMapEncodeTiled",
                "the TMA forward needs a CUDA 12.0+ driver", "update the driver or set FLATATTN_CUDA_SM90_WS=0");

  CUtensorMap map{};
  const cuuint64_t gdim[4] = {static_cast<cuuint64_t>(dims[0]), static_cast<cuuint64_t>(dims[1]),
                              static_cast<cuuint64_t>(dims[2]), static_cast<cuuint64_t>(dims[3])};
  const cuuint64_t gstride[3] = {static_cast<cuuint64_t>(st[0]), static_cast<cuuint64_t>(st[1]), static_cast<cuuint64_t>(st[2])};
  const cuuint32_t box[4] = {64, static_cast<cuuint32_t>(s.box_rows), 1, 1};
  const cuuint32_t estride[4] = {1, 1, 1, 1};
  const CUresult r = encode(&map, bf16 ? CU_TENSOR_MAP_DATA_TYPE_BFLOAT16 : CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 4,
                            const_cast<void*>(s.base), gdim, gstride, box, estride, CU_TENSOR_MAP_INTERLEAVE_NONE,
                            CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                            CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  if (r != CUDA_SUCCESS)
    throw Error(Error::Kind::unsupported, s.what, "a tensor map (cuTensorMapEncodeTiled returned " + std::to_string(static_cast<int>(r)) + ")",
                "the copy engine rejected the operand's shape or strides", "report it, or set FLATATTN_CUDA_SM90_WS=0");
  return map;
}

}  // namespace flatattn::cuda
