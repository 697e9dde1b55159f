// flatattn: element types and devices of tensor views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace flatattn {

/// Element type of a tensor view.
/// f32/f16/bf16 are the storage types attention accepts; i32 is for cu_seqlens;
/// f64 is accepted only by the fp64 oracle (src/reference) for its outputs.
enum class DType : std::uint8_t { f32, f16, bf16, f64, i32 };

/// Where a tensor's memory lives.
enum class DeviceKind : std::uint8_t { cpu, cuda };

struct Device {
  DeviceKind kind = DeviceKind::cpu;
  int index = 0;  ///< CUDA ordinal; ignored on the CPU
  friend bool operator==(const Device&, const Device&) = default;
  static constexpr Device cpu() { return {DeviceKind::cpu, 0}; }
  static constexpr Device cuda(int i = 0) { return {DeviceKind::cuda, i}; }
};

/// Bytes per element.
constexpr std::size_t element_size(DType t) {
  switch (t) {
    case DType::f16:
    case DType::bf16: return 2;
    case DType::f32:
    case DType::i32: return 4;
    case DType::f64: return 8;
  }
  return 0;
}

/// Lower-case name as used by the CLI and error messages ("f32", "f16", "bf16", ...).
constexpr std::string_view name(DType t) {
  switch (t) {
    case DType::f32: return "f32";
    case DType::f16: return "f16";
    case DType::bf16: return "bf16";
    case DType::f64: return "f64";
    case DType::i32: return "i32";
  }
  return "?";
}

constexpr std::string_view name(DeviceKind d) { return d == DeviceKind::cpu ? "cpu" : "cuda"; }

}  // namespace flatattn
