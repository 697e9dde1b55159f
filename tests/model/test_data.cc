// Hardware, workload and kernel data files: every preset loads with the paper's numbers, user files
// and "base" overrides work, and every bad file is an Error naming the file, the key and the expectation.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "flatattn/error.h"
#include "src/model/data_dir.h"
#include "src/model/planner.h"
#include "src/model/workload.h"

using namespace flatattn;
using namespace flatattn::model;
namespace fs = std::filesystem;

namespace {

/// A scratch directory removed at the end of the test.
struct Scratch {
  fs::path dir;
  Scratch() {
    dir = fs::temp_directory_path() / ("flatattn_model_test_" + std::to_string(::testing::UnitTest::GetInstance()->random_seed()) +
                                       "_" + ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir);
  }
  ~Scratch() { fs::remove_all(dir); }
  fs::path write(const std::string& name, const std::string& text) const {
    std::ofstream(dir / name) << text;
    return dir / name;
  }
};

/// Expects load(path) to throw an Error whose message contains every part.
template <class F>
void expect_error(F&& load, std::initializer_list<std::string> parts) {
  try {
    load();
    ADD_FAILURE() << "expected an error";
  } catch (const Error& e) {
    const std::string m = e.what();
    for (const std::string& p : parts) EXPECT_NE(m.find(p), std::string::npos) << "'" << p << "' missing in: " << m;
    EXPECT_NE(m.find("fix:"), std::string::npos) << m;
  }
}

const char* kAccel = R"({"name": "mine", "kind": "accelerator", "pe_rows": 16, "pe_cols": 16, "freq_mhz": 500,
  "buffer_bytes": 65536, "onchip_gbps": 100, "offchip_gbps": 10, "sfu_ops_per_cycle": 32})";

}  // namespace

TEST(Data, PresetsLoadWithThePapersNumbers) {
  const auto hw = hardware_presets();
  for (const char* want : {"edge", "cloud", "h100", "h100-measured", "h200", "a100", "t4"})
    EXPECT_NE(std::find(hw.begin(), hw.end(), want), hw.end()) << want;
  for (const std::string& n : hw) EXPECT_NO_THROW(load_hardware(n)) << n;
  for (const std::string& n : workload_presets()) EXPECT_NO_THROW(load_workload(n)) << n;
  for (const std::string& n : kernel_presets()) EXPECT_FALSE(load_kernel_variants(n).empty()) << n;

  const Hardware edge = load_hardware("edge"), cloud = load_hardware("cloud");
  EXPECT_EQ(edge.accel.pe_rows * edge.accel.pe_cols, 32 * 32);  // FLAT Table 2
  EXPECT_EQ(edge.accel.buffer_bytes, 512 * 1024);
  EXPECT_EQ(edge.accel.offchip_bw, 50e9);
  EXPECT_EQ(edge.accel.onchip_bw, 1e12);
  EXPECT_EQ(cloud.accel.pe_rows * cloud.accel.pe_cols, 256 * 256);
  EXPECT_EQ(cloud.accel.buffer_bytes, 32 * 1024 * 1024);
  EXPECT_EQ(cloud.accel.offchip_bw, 400e9);
  EXPECT_EQ(cloud.accel.onchip_bw, 8e12);
  EXPECT_EQ(cloud.accel.freq_hz, 940e6);

  const struct { const char* n; std::int64_t d_model, heads, hd, ffn; } paper[] = {
      {"bert", 768, 12, 64, 3072}, {"trxl", 1024, 16, 64, 4096}, {"t5", 512, 8, 64, 2048}, {"xlm", 2048, 16, 128, 8192}};
  for (const auto& p : paper) {
    const Workload w = load_workload(p.n);
    EXPECT_EQ(w.batch, 64) << p.n;
    EXPECT_EQ(w.d_model, p.d_model);
    EXPECT_EQ(w.heads, p.heads);
    EXPECT_EQ(w.head_dim, p.hd);
    EXPECT_EQ(w.ffn, p.ffn);
  }
  const Workload llama = load_workload("Llama3-8B");  // names are case-insensitive
  EXPECT_EQ(llama.heads, 32);
  EXPECT_EQ(llama.kv_heads, 8);
  EXPECT_EQ(llama.group(), 4);
  EXPECT_TRUE(llama.causal);
}

TEST(Data, UserFilesAndBaseOverrides) {
  Scratch s;
  const Hardware mine = load_hardware(s.write("mine.json", kAccel).string());
  EXPECT_EQ(mine.name, "mine");
  EXPECT_EQ(mine.accel.pe_rows, 16);
  EXPECT_EQ(mine.accel.softmax_ops_per_element, 4);  // default
  // A file overriding a preset, and one overriding a sibling file by relative path.
  const Hardware big = load_hardware(s.write("big.json", R"({"base": "cloud", "name": "cloud-2GB", "buffer_bytes": 2e9})").string());
  EXPECT_EQ(big.accel.buffer_bytes, 2e9);
  EXPECT_EQ(big.accel.pe_rows, 256);
  const Hardware sib = load_hardware(s.write("sib.json", R"({"base": "mine.json", "name": "sib", "pe_cols": 8})").string());
  EXPECT_EQ(sib.accel.pe_cols, 8);
  EXPECT_EQ(sib.accel.pe_rows, 16);
  const Workload w = load_workload(s.write("w.json", R"({"name": "tiny", "batch": 2, "heads": 4, "kv_heads": 2, "head_dim": 32})").string());
  EXPECT_EQ(w.d_model, 128);
  EXPECT_EQ(w.group(), 2);
}

TEST(Data, BadFilesNameFileKeyAndExpectation) {
  Scratch s;
  expect_error([] { load_hardware("no-such-gpu"); }, {"no-such-gpu", "edge", "cloud", "h100"});
  expect_error([&] { load_hardware((s.dir / "missing.json").string()); }, {"missing.json", "no such file"});
  const fs::path syntax = s.write("syntax.json", "{\"name\": \"x\",, }");
  expect_error([&] { load_hardware(syntax.string()); }, {"syntax.json", "not valid JSON"});
  const fs::path no_key = s.write("nokey.json", R"({"name": "x", "kind": "accelerator", "pe_rows": 4})");
  expect_error([&] { load_hardware(no_key.string()); }, {"nokey.json", "pe_cols", "missing"});
  const fs::path type = s.write("type.json", std::string(kAccel).replace(std::string(kAccel).find("16"), 2, "\"16\""));
  expect_error([&] { load_hardware(type.string()); }, {"type.json", "pe_rows", "an integer"});
  const fs::path range = s.write("range.json", std::string(kAccel).replace(std::string(kAccel).find("500"), 3, "-5"));
  expect_error([&] { load_hardware(range.string()); }, {"range.json", "freq_mhz", "-5", "a number in"});
  const fs::path unknown = s.write("unknown.json", std::string(kAccel).insert(1, "\"pe_row\": 3, "));
  expect_error([&] { load_hardware(unknown.string()); }, {"unknown.json", "pe_row", "known keys"});
  const fs::path kind = s.write("kind.json", R"({"name": "x", "kind": "tpu"})");
  expect_error([&] { load_hardware(kind.string()); }, {"kind.json", "kind", "\"accelerator\" or \"gpu\""});
  const fs::path gqa = s.write("gqa.json", R"({"name": "x", "batch": 1, "heads": 6, "kv_heads": 4, "head_dim": 64})");
  expect_error([&] { load_workload(gqa.string()); }, {"gqa.json", "kv_heads", "divisor of heads"});
  const fs::path gpu = s.write("gpu.json", R"({"base": "h100", "name": "x", "paths": {"sm80": {"overlap": 2}}})");
  expect_error([&] { load_hardware(gpu.string()); }, {"gpu.json", "paths.sm80.overlap", "[0, 1]"});
  const fs::path kern = s.write("kern.json", R"({"variants": [{"name": "k", "dataflow": "fast", "block_m": 64, "block_n": 64, "warps": 4}]})");
  expect_error([&] { load_kernel_variants(kern.string()); }, {"kern.json", "variants[0].dataflow", "\"flash\" or \"flat\""});
}

TEST(Data, DataRootLookup) {
  const fs::path root = data_root();
  EXPECT_TRUE(fs::is_directory(root / "model" / "hardware")) << root;
  EXPECT_TRUE(fs::is_regular_file(tool_path("plot_model.py")));
  // FLATATTN_DATA_DIR wins, and a wrong one is an error, not a silent fallback.
  Scratch s;
  fs::create_directories(s.dir / "model" / "hardware");
  fs::copy_file(root / "model" / "hardware" / "edge.json", s.dir / "model" / "hardware" / "only.json");
  ::setenv("FLATATTN_DATA_DIR", s.dir.c_str(), 1);
  EXPECT_EQ(hardware_presets(), std::vector<std::string>{"only"});
  ::setenv("FLATATTN_DATA_DIR", (s.dir / "nope").c_str(), 1);
  expect_error([] { data_root(); }, {"FLATATTN_DATA_DIR", "nope"});
  ::unsetenv("FLATATTN_DATA_DIR");
  EXPECT_EQ(data_root(), root);
}
