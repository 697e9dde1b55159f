// Which code path a device compilation pass takes. One source serves every family:
//   sm80 and sm86 families (SASS for sm_80/87/90 and sm_86/89; they differ only in tile sizes,
//   policy/tile_size.h): mma.sync m16n8k16 (f16 and bf16), cp.async loads.
//   sm75 family (compute_75 PTX, JIT-compiled by the driver on Turing or newer): two m16n8k8 per
//   m16n8k16 (f16 only: Turing has no bf16 tensor cores) and synchronous 16-byte loads (no cp.async).
#pragma once

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#define FLATATTN_SM75_PATH 1
#else
#define FLATATTN_SM75_PATH 0
#endif

#define FLATATTN_DEVICE __device__ __forceinline__
