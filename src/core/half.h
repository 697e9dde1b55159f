// Host conversions between float and the 16-bit storage types (round to nearest even).
#pragma once

#include <cstdint>
#include <cstring>

#include "flatattn/dtype.h"

namespace flatattn {

inline float bf16_to_float(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t float_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu)) return static_cast<std::uint16_t>((u >> 16) | 0x40);  // NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}

inline float f16_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  std::uint32_t exp = (h >> 10) & 0x1fu;
  std::uint32_t man = h & 0x3ffu;
  std::uint32_t u;
  if (exp == 0x1f) {
    u = sign | 0x7f800000u | (man << 13);
  } else if (exp == 0) {
    if (man == 0) {
      u = sign;
    } else {  // subnormal: normalize
      int e = -1;
      do {
        ++e;
        man <<= 1;
      } while ((man & 0x400u) == 0);
      u = sign | static_cast<std::uint32_t>(127 - 15 - e) << 23 | (man & 0x3ffu) << 13;
    }
  } else {
    u = sign | (exp + 112u) << 23 | man << 13;
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

inline std::uint16_t float_to_f16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t absu = u & 0x7fffffffu;
  if (absu >= 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7c00u | (absu > 0x7f800000u ? 0x200u : 0));
  if (absu >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to inf
  if (absu < 0x38800000u) {                                                  // subnormal or zero in f16
    if (absu < 0x33000000u) return static_cast<std::uint16_t>(sign);        // < half of smallest subnormal
    const std::uint32_t exp = absu >> 23;
    const std::uint32_t man = (absu & 0x7fffffu) | 0x800000u;
    const std::uint32_t shift = 126 - exp;  // 14 - (exp - 127) + 13 - 1 ... places to drop
    std::uint32_t r = man >> shift;
    const std::uint32_t rem = man & ((1u << shift) - 1);
    const std::uint32_t half = 1u << (shift - 1);
    if (rem > half || (rem == half && (r & 1u))) ++r;
    return static_cast<std::uint16_t>(sign | r);
  }
  std::uint32_t r = absu - 0x38000000u;  // rebias exponent 127 -> 15
  r += 0xfffu + ((r >> 13) & 1u);
  return static_cast<std::uint16_t>(sign | (r >> 13));
}

/// Load element `i` (element offset) of a buffer of dtype t as float.
inline float load_float(const void* p, DType t, std::int64_t i) {
  switch (t) {
    case DType::f32: return static_cast<const float*>(p)[i];
    case DType::f16: return f16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DType::bf16: return bf16_to_float(static_cast<const std::uint16_t*>(p)[i]);
    case DType::f64: return static_cast<float>(static_cast<const double*>(p)[i]);
    case DType::i32: return static_cast<float>(static_cast<const std::int32_t*>(p)[i]);
  }
  return 0.f;
}

inline double load_double(const void* p, DType t, std::int64_t i) {
  if (t == DType::f64) return static_cast<const double*>(p)[i];
  return static_cast<double>(load_float(p, t, i));
}

/// Store v at element offset i of a buffer of dtype t (rounding to nearest even).
inline void store_double(void* p, DType t, std::int64_t i, double v) {
  switch (t) {
    case DType::f32: static_cast<float*>(p)[i] = static_cast<float>(v); break;
    case DType::f16: static_cast<std::uint16_t*>(p)[i] = float_to_f16(static_cast<float>(v)); break;
    case DType::bf16: static_cast<std::uint16_t*>(p)[i] = float_to_bf16(static_cast<float>(v)); break;
    case DType::f64: static_cast<double*>(p)[i] = v; break;
    case DType::i32: static_cast<std::int32_t*>(p)[i] = static_cast<std::int32_t>(v); break;
  }
}

/// Round v to the precision of dtype t (double -> t -> double). Used by the low-precision naive reference.
inline double round_to(DType t, double v) {
  switch (t) {
    case DType::f32: return static_cast<double>(static_cast<float>(v));
    case DType::f16: return f16_to_float(float_to_f16(static_cast<float>(v)));
    case DType::bf16: return bf16_to_float(float_to_bf16(static_cast<float>(v)));
    default: return v;
  }
}

}  // namespace flatattn
