// Runs the built `flatattn` binary: bad flags exit 2 with one line naming the flag and the allowed
// values; each subcommand has --help; a tiny run, check --quick and bench --json work and pass.
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

namespace {

struct Result {
  int code = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

std::string temp_path(const std::string& tag) {
  return ::testing::TempDir() + "flatattn_cli_" + std::to_string(::getpid()) + "_" + tag;
}

Result run(const std::string& args) {
  const std::string out = temp_path("out"), err = temp_path("err");
  const std::string cmd = std::string("'") + FLATATTN_CLI_BINARY + "' " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = slurp(out);
  r.err = slurp(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

int lines(const std::string& s) {
  int n = 0;
  for (char c : s) n += c == '\n';
  return n;
}

struct BadInput {
  const char* args;
  const char* flag;     // the flag the message must name
  const char* allowed;  // a piece of the allowed values
};

class BadInputTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(BadInputTest, ExitsTwoWithOneLineNamingTheFlag) {
  const BadInput& c = GetParam();
  const Result r = run(c.args);
  EXPECT_EQ(r.code, 2) << c.args << "\nstdout: " << r.out << "\nstderr: " << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(c.flag), std::string::npos) << "message does not name " << c.flag << ": " << r.err;
  EXPECT_NE(r.err.find("allowed"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find(c.allowed), std::string::npos) << r.err;
  EXPECT_TRUE(r.out.empty()) << "nothing on stdout for bad input: " << r.out;
}

INSTANTIATE_TEST_SUITE_P(
    Flags, BadInputTest,
    ::testing::Values(BadInput{"run --d 0", "--d", "integers >= 1"},
                      BadInput{"run --n -5", "--n", "integers >= 1"},
                      BadInput{"run --n=-5", "--n", "integers >= 1"},
                      BadInput{"run --n abc", "--n", "integers >= 1"},
                      BadInput{"run --nk 0", "--nk", "integers >= 1"},
                      BadInput{"run --batch 0", "--batch", "integers >= 1"},
                      BadInput{"run --hq 12 --hkv 5", "--hkv", "1, 2, 3, 4, 6, 12"},
                      BadInput{"run --dtype f8", "--dtype", "f32, f16, bf16"},
                      BadInput{"run --window -2", "--window", ">= -1"},
                      BadInput{"run --window 8,-3", "--window", ">= -1"},
                      BadInput{"run --window 8,4", "--window", "RIGHT -1 or 0 with --causal"},
                      BadInput{"run --softcap -1", "--softcap", ">= 0"},
                      BadInput{"run --scale 0", "--scale", "> 0"},
                      BadInput{"run --threads -1", "--threads", "0 .. 4096"},
                      BadInput{"run --dataflow tiled", "--dataflow", "auto, flash, flat"},
                      BadInput{"run --mode sideways", "--mode", "fwd, bwd, fwdbwd"},
                      BadInput{"run --device tpu", "--device", "auto, cpu, cuda"},
                      BadInput{"run --causal-align middle", "--causal-align", "bottom-right, top-left"},
                      BadInput{"run --reps 0", "--reps", "1 .. 10000"},
                      BadInput{"check --dtype f64", "--dtype", "f32, f16, bf16"},
                      BadInput{"check --device gpu", "--device", "auto, cpu, cuda"},
                      BadInput{"bench --n 512,0", "--n", "integers >= 1"},
                      BadInput{"bench --methods flash,nope", "--methods", "flash, flat, naive"},
                      BadInput{"bench --hq 8 --hkv 3", "--hkv", "1, 2, 4, 8"},
                      BadInput{"bench --tokens -1", "--tokens", "integers >= 1"}));

TEST(Cli, DeviceCudaWithoutCudaNamesTheFlag) {
  const Result r = run("run --device cuda --n 16 --hq 1 --d 8 -b 1");
  if (r.code == 0) GTEST_SKIP() << "this build has CUDA and a device";
  EXPECT_EQ(r.code, 2) << r.err;
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find("--device"), std::string::npos) << r.err;
}

TEST(Cli, NoSubcommandIsBadInput) {
  const Result r = run("");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("run, check, bench"), std::string::npos) << r.err;
}

TEST(Cli, EachSubcommandHasHelp) {
  for (const char* sub : {"run", "check", "bench"}) {
    const Result r = run(std::string(sub) + " --help");
    EXPECT_EQ(r.code, 0) << sub << ": " << r.err;
    EXPECT_NE(r.out.find(std::string("Usage: flatattn ") + sub), std::string::npos) << r.out;
    EXPECT_NE(r.out.find("--device"), std::string::npos) << sub << " --help lacks --device";
  }
  const Result top = run("--help");
  EXPECT_EQ(top.code, 0);
  for (const char* sub : {"run", "check", "bench"}) EXPECT_NE(top.out.find(sub), std::string::npos);
  const Result run_help = run("run --help");
  for (const char* flag : {"--batch", "--n", "--hq", "--hkv", "--d", "--dtype", "--causal", "--window", "--dataflow",
                           "--threads", "--json", "--mode"})
    EXPECT_NE(run_help.out.find(flag), std::string::npos) << "run --help lacks " << flag;
}

TEST(Cli, TinyRunPrintsTheFieldsAndPasses) {
  const Result r = run("run -b 1 -n 64 --hq 2 --hkv 1 -d 32 --reps 1");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"fused", "naive", "backend", "dataflow", "tiles", "time ms", "GFLOP/s", "peak mem",
                            "workspace", "PASS", "sampled rows", "every output written", "seed"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST(Cli, RunJsonHasTheMeasurements) {
  const Result r = run("run -b 2 -n 48 --nk 80 --hq 4 --hkv 2 -d 16 --window 20,0 --softcap 15 --reps 2 --json");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["command"], "run");
  EXPECT_EQ(j["workload"]["Nk"], 80);
  ASSERT_EQ(j["results"].size(), 2u);
  const auto& fused = j["results"][0];
  EXPECT_EQ(fused["method"], "fused");
  EXPECT_TRUE(fused["check"]["pass"].get<bool>()) << fused.dump();
  EXPECT_EQ(fused["check"]["unwritten"], 0);
  EXPECT_GT(fused["check"]["compared"].get<int>(), 0);
  EXPECT_GT(fused["median_ms"].get<double>(), 0);
  EXPECT_GT(fused["gflops"].get<double>(), 0);
  EXPECT_TRUE(fused["peak_bytes"].is_number());
  EXPECT_EQ(fused["times_ms"].size(), 2u);
  EXPECT_FALSE(fused["report"]["backend"].get<std::string>().empty());
  for (const char* k : {"cpu", "commit", "date", "logical_cpus"}) EXPECT_TRUE(j["machine"].contains(k)) << k;
}

// --fp32-matmul bf16 (Options::fp32_matmul): the kernel name shows the matrix path, and the sampled-row check
// judges it as a bf16 call on the rounded inputs (cli/sample_check.cc) and passes, forward and fwd+bwd; the flag
// is refused for other dtypes. A CPU without AMX-BF16 / AVX512-BF16 answers with the library's Error instead.
TEST(Cli, RunFp32MatmulBf16) {
  for (const char* mode : {"fwd", "fwdbwd"}) {
    const Result r = run(std::string("run -b 2 -n 96 --hq 4 --hkv 2 -d 64 --reps 1 --device cpu --dtype f32 "
                                     "--fp32-matmul bf16 --json --mode ") + mode);
    if (r.code != 0 && r.err.find("fp32_matmul") != std::string::npos &&
        r.err.find("AVX512-BF16") != std::string::npos)
      GTEST_SKIP() << "no AMX-BF16 / AVX512-BF16 here: " << r.err;
    ASSERT_EQ(r.code, 0) << r.out << r.err;
    const auto j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["workload"]["fp32_matmul"], "bf16");
    const auto& fused = j["results"][0];
    const std::string kernel = fused["report"]["kernel"].get<std::string>();
    EXPECT_TRUE(kernel.find("_amx") != std::string::npos || kernel.find("_avx512bf16") != std::string::npos) << kernel;
    EXPECT_TRUE(fused["check"]["pass"].get<bool>()) << fused.dump();
    EXPECT_GT(fused["check"]["compared"].get<int>(), 0);
  }
  const Result bad = run("run -n 16 --hq 1 -d 8 -b 1 --device cpu --dtype bf16 --fp32-matmul bf16");
  EXPECT_EQ(bad.code, 2) << bad.err;
  EXPECT_NE(bad.err.find("--fp32-matmul"), std::string::npos) << bad.err;
}

TEST(Cli, RunDecodePrintsTimeAndBandwidthAndPasses) {
  const Result r = run("run --decode -b 3 -n 300 --hq 8 --hkv 2 -d 64 --page-size 16 --nq 2 --reps 2 --device cpu");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"run --decode", "kernel: cpu_kvcache", "time: median", "bandwidth:", "GB/s", "PASS"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
  const Result j = run("run --decode -b 2 -n 100 --hq 4 --hkv 1 -d 32 --splits 3 --reps 1 --device cpu --json");
  ASSERT_EQ(j.code, 0) << j.out << j.err;
  const auto js = nlohmann::json::parse(j.out);
  EXPECT_GT(js["bandwidth_gbs"].get<double>(), 0);
  EXPECT_EQ(js["kernel"], "cpu_kvcache_gqa_paged_splits3");
  EXPECT_EQ(js["cache_check"], "PASS");
}

TEST(Cli, CheckQuickPasses) {
  const Result r = run("check --quick");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find(" 0 failed"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("PASS"), std::string::npos);
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST(Cli, BenchWritesCsvAndJson) {
  const std::string js = temp_path("bench.json"), csv = temp_path("bench.csv");
  const Result r = run("bench -q --n 32,64 --hq 2 -d 16 --tokens 128 --reps 1 --sgemm-n 128 --json " + js + " --csv " + csv);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(slurp(js));
  for (const char* k : {"machine", "workload", "mode", "n", "sgemm", "results", "summary", "rule"})
    EXPECT_TRUE(j.contains(k)) << "missing key " << k;
  EXPECT_EQ(j["results"].size(), 6u);  // 2 N x (flash, flat, naive)
  for (const auto& res : j["results"]) {
    EXPECT_TRUE(res.contains("label") && res.contains("N") && res.contains("B")) << res.dump();
    if (res.contains("skipped")) continue;
    for (const char* k : {"median_ms", "gflops", "peak_bytes", "check", "report", "threads"})
      EXPECT_TRUE(res.contains(k)) << "missing " << k << " in " << res.dump();
    EXPECT_TRUE(res["check"]["pass"].get<bool>()) << res.dump();
    EXPECT_EQ(res["B"].get<int>() * res["N"].get<int>(), 128);
  }
  EXPECT_EQ(j["summary"].size(), 2u);
  const std::string c = slurp(csv);
  EXPECT_EQ(c.rfind("N,B,method,", 0), 0u) << c;
  EXPECT_EQ(lines(c), 7) << c;
  std::remove(js.c_str());
  std::remove(csv.c_str());
}

}  // namespace
