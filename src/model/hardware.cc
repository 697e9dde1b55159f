#include "src/model/hardware.h"

#include <cmath>

#include "flatattn/error.h"
#include "src/model/data_dir.h"
#include "src/model/json_reader.h"

namespace flatattn::model {

using detail::Reader;

namespace {

constexpr double kBig = 1e30;

DType parse_dtype(const Reader& r, const std::string& key) {
  if (key == "f16") return DType::f16;
  if (key == "bf16") return DType::bf16;
  if (key == "f32") return DType::f32;
  detail::bad_value(r.file(), r.key(key), key, "a dtype key: f16, bf16 or f32");
}

EnergyCosts read_energy(const Reader& r) {
  r.only({"offchip_byte", "onchip_byte", "mac", "sfu_op"});
  EnergyCosts e;
  e.offchip_byte = r.number("offchip_byte", 0, 1e6);
  e.onchip_byte = r.number("onchip_byte", 0, 1e6);
  e.mac = r.number("mac", 0, 1e6);
  e.sfu_op = r.number("sfu_op", 0, 1e6);
  return e;
}

Accelerator read_accelerator(const Reader& r) {
  r.only({"name", "kind", "description", "source", "pe_rows", "pe_cols", "freq_mhz", "buffer_bytes",
          "onchip_gbps", "offchip_gbps", "sfu_ops_per_cycle", "softmax_ops_per_element", "energy_pj"});
  Accelerator a;
  a.pe_rows = int(r.integer("pe_rows", 1, 1 << 16));
  a.pe_cols = int(r.integer("pe_cols", 1, 1 << 16));
  a.freq_hz = r.number("freq_mhz", 1e-3, 1e6) * 1e6;
  a.buffer_bytes = r.number("buffer_bytes", 1, kBig);
  a.onchip_bw = r.number("onchip_gbps", 1e-6, kBig) * 1e9;
  a.offchip_bw = r.number("offchip_gbps", 1e-6, kBig) * 1e9;
  a.sfu_ops_per_cycle = r.number("sfu_ops_per_cycle", 1e-6, kBig);
  a.softmax_ops_per_element = r.number("softmax_ops_per_element", 0, 1e3, false, 4);
  if (r.has("energy_pj")) a.energy = read_energy(r.object("energy_pj"));
  return a;
}

GpuPath read_path(const Reader& r) {
  r.only({"mma_efficiency", "overlap", "flat_overlap", "alu_ops_per_score", "mask_ops_per_score", "rescale_ops_per_row",
          "warps_to_saturate", "cta_overhead_cycles", "persistent_tile_cycles", "max_regs_per_thread", "reg_overhead",
          "smem_reader_warps"});
  GpuPath p;
  p.mma_efficiency = r.number("mma_efficiency", 1e-3, 1);
  p.overlap = r.number("overlap", 0, 1);
  p.flat_overlap = r.number("flat_overlap", 0, 1, false, p.overlap / 2);
  p.alu_ops_per_score = r.number("alu_ops_per_score", 0, 1e3);
  p.mask_ops_per_score = r.number("mask_ops_per_score", 0, 1e3, false, p.mask_ops_per_score);
  p.rescale_ops_per_row = r.number("rescale_ops_per_row", 0, 1e3, false, p.rescale_ops_per_row);
  p.warps_to_saturate = r.number("warps_to_saturate", 1, 1024);
  p.cta_overhead_cycles = r.number("cta_overhead_cycles", 0, 1e9, false, p.cta_overhead_cycles);
  p.persistent_tile_cycles = r.number("persistent_tile_cycles", 0, 1e9, false, p.persistent_tile_cycles);
  p.max_regs_per_thread = int(r.integer("max_regs_per_thread", 16, 1024, false, p.max_regs_per_thread));
  p.reg_overhead = int(r.integer("reg_overhead", 0, 1024, false, p.reg_overhead));
  p.smem_reader_warps = int(r.integer("smem_reader_warps", 1, 32, false, p.smem_reader_warps));
  return p;
}

DecodeCalib read_decode(const Reader& r) {
  r.only({"start_us", "wave_us", "tile_us_row_pages", "tile_us_tile_pages", "stream_gbps", "combine_us",
          "combine_split_us"});
  DecodeCalib c;
  c.start_us = r.number("start_us", 0, 1e6);
  c.wave_us = r.number("wave_us", 0, 1e6);
  c.tile_us_row_pages = r.number("tile_us_row_pages", 1e-6, 1e6);
  c.tile_us_tile_pages = r.number("tile_us_tile_pages", 1e-6, 1e6);
  c.stream_gbps = r.number("stream_gbps", 1e-3, kBig);
  c.combine_us = r.number("combine_us", 0, 1e6);
  c.combine_split_us = r.number("combine_split_us", 0, 1e6);
  return c;
}

Gpu read_gpu(const Reader& r) {
  r.only({"name", "kind", "description", "source", "sms", "clock_mhz", "tensor_tflops", "hbm_gbps",
          "l2_bytes", "l2_gbps", "smem_per_sm", "smem_per_cta", "regs_per_sm", "max_warps_per_sm",
          "max_ctas_per_sm", "mufu_per_clk_per_sm", "fp32_per_clk_per_sm", "smem_bytes_per_clk_per_sm",
          "launch_us", "gemm_efficiency", "stream_efficiency", "paths", "default_path", "decode"});
  Gpu g;
  g.sms = int(r.integer("sms", 1, 100000));
  g.clock_hz = r.number("clock_mhz", 1, 1e5) * 1e6;
  const Reader t = r.object("tensor_tflops");
  for (auto it = t.json().begin(); it != t.json().end(); ++it) {
    if (it.key() == "notes" || it.key()[0] == '_') continue;
    g.tensor_flops[parse_dtype(t, it.key())] = t.number(it.key(), 0, 1e6) * 1e12;
  }
  g.hbm_bw = r.number("hbm_gbps", 1e-3, kBig) * 1e9;
  g.l2_bytes = r.number("l2_bytes", 0, kBig);
  g.l2_bw = r.number("l2_gbps", 1e-3, kBig) * 1e9;
  g.smem_per_sm = int(r.integer("smem_per_sm", 1024, 1 << 30));
  g.smem_per_cta = int(r.integer("smem_per_cta", 1024, 1 << 30));
  g.regs_per_sm = int(r.integer("regs_per_sm", 1024, 1 << 30, false, g.regs_per_sm));
  g.max_warps_per_sm = int(r.integer("max_warps_per_sm", 1, 4096, false, g.max_warps_per_sm));
  g.max_ctas_per_sm = int(r.integer("max_ctas_per_sm", 1, 4096, false, g.max_ctas_per_sm));
  g.mufu_per_clk_per_sm = r.number("mufu_per_clk_per_sm", 1e-3, 1e6);
  g.fp32_per_clk_per_sm = r.number("fp32_per_clk_per_sm", 1e-3, 1e6);
  g.smem_bytes_per_clk_per_sm = r.number("smem_bytes_per_clk_per_sm", 1e-3, 1e6);
  g.launch_s = r.number("launch_us", 0, 1e6) * 1e-6;
  g.gemm_efficiency = r.number("gemm_efficiency", 1e-3, 1);
  g.stream_efficiency = r.number("stream_efficiency", 1e-3, 1);
  const Reader paths = r.object("paths");
  for (auto it = paths.json().begin(); it != paths.json().end(); ++it) {
    if (it.key() == "notes" || it.key()[0] == '_') continue;
    g.paths[it.key()] = read_path(paths.object(it.key()));
  }
  if (g.paths.empty()) detail::bad_value(r.file(), r.key("paths"), "{}", "at least one kernel family, e.g. \"sm80\"");
  g.default_path = r.string("default_path", false, g.paths.begin()->first);
  if (!g.paths.count(g.default_path))
    detail::bad_value(r.file(), r.key("default_path"), g.default_path, "a key of \"paths\"");
  if (r.has("decode")) g.decode = read_decode(r.object("decode"));
  return g;
}

}  // namespace

double Gpu::tensor_rate(DType dtype) const {
  auto it = tensor_flops.find(dtype);
  if (it == tensor_flops.end() || it->second <= 0)
    throw Error(Error::Kind::unsupported, "dtype", std::string(name(dtype)),
                "this GPU has no tensor-core rate for it in its hardware file",
                "use a dtype the GPU supports (Turing: f16), or add it under \"tensor_tflops\"");
  return it->second;
}

const GpuPath& Gpu::path(std::string_view p) const {
  const std::string key = p.empty() ? default_path : std::string(p);
  auto it = paths.find(key);
  if (it == paths.end()) {
    std::string known;
    for (const auto& [k, v] : paths) known += (known.empty() ? "" : ", ") + k;
    throw Error(Error::Kind::invalid_argument, "kernel path", key, "no calibration for it on this GPU",
                "use one of: " + known + ", or add it under \"paths\" in the GPU's hardware file");
  }
  return it->second;
}

Hardware load_hardware(std::string_view name_or_path) {
  Hardware h;
  const detail::Json j = detail::load_layered("hardware", name_or_path, h.file);
  const Reader r(j, h.file);
  h.name = r.string("name");
  h.description = r.string("description", false);
  h.source = r.string("source", false);
  const std::string kind = r.string("kind");
  if (kind == "accelerator") {
    h.kind = Hardware::Kind::accelerator;
    h.accel = read_accelerator(r);
  } else if (kind == "gpu") {
    h.kind = Hardware::Kind::gpu;
    h.gpu = read_gpu(r);
  } else {
    detail::bad_value(h.file, "kind", "\"" + kind + "\"", "\"accelerator\" or \"gpu\"");
  }
  return h;
}

std::vector<std::string> hardware_presets() { return list_presets("hardware"); }

Hardware gpu_preset_for(int cc_major, int cc_minor, std::string_view device_name, int sms, int smem_per_cta) {
  std::string preset;
  if (cc_major == 9)
    preset = device_name.find("H200") != std::string_view::npos ? "h200" : "h100";
  else if (cc_major == 8)
    preset = "a100";
  else if (cc_major == 7 && cc_minor == 5)
    preset = "t4";
  else
    throw Error(Error::Kind::unsupported, "compute capability",
                std::to_string(cc_major) + "." + std::to_string(cc_minor),
                "the model has presets for 7.5 (t4), 8.x (a100) and 9.0 (h100, h200)",
                "write a hardware file for this GPU (data/model/README.md) and load it with load_hardware()");
  Hardware h = load_hardware(preset);
  if (sms > 0) h.gpu.sms = sms;
  if (smem_per_cta > 0) h.gpu.smem_per_cta = smem_per_cta;
  return h;
}

}  // namespace flatattn::model
