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
                      BadInput{"bench --tokens -1", "--tokens", "integers >= 1"},
                      // sparse attention (issue 16): --density, --block, --global
                      BadInput{"run --density 0", "--density", "0 < P <= 1"},
                      BadInput{"run --density 1.5", "--density", "0 < P <= 1"},
                      BadInput{"run --density x", "--density", "0 < P <= 1"},
                      BadInput{"run --block 64", "--block", "with --density"},
                      BadInput{"run --density 0.5 --block 0", "--block", "integers 1 .."},
                      BadInput{"run --global 0", "--global", "integers 1 .."},
                      BadInput{"run -n 64 --global 65", "--global", "min(Nq, Nk) = 64"},
                      BadInput{"run --global 2 --density 0.5", "--density", "--no-causal"},
                      BadInput{"run --decode --global 2", "--global", "drop --decode"},
                      BadInput{"bench -q --n 64,32 --hq 1 -d 16 --tokens 64 --reps 1 --sgemm-n 64 --methods flash "
                               "--global 40",
                               "--global", "min(Nq, Nk) = 32"},
                      // check's workload of one's own (the same flags and messages as run's)
                      BadInput{"check --density 0", "--density", "0 < P <= 1"},
                      BadInput{"check --density 1.5", "--density", "0 < P <= 1"},
                      BadInput{"check --block 64", "--block", "with --density"},
                      BadInput{"check --density 0.5 --block 0", "--block", "integers 1 .."},
                      BadInput{"check --global 0", "--global", "integers 1 .."},
                      BadInput{"check --global=-3", "--global", "integers 1 .."},
                      BadInput{"check -n 64 --global 65", "--global", "min(Nq, Nk) = 64"},
                      BadInput{"check --global 2 --density 0.5", "--density", "--no-causal"},
                      BadInput{"check --hq 4 --hkv 3 --density 0.5", "--hkv", "1, 2, 4"},
                      BadInput{"check --fuzz 3 --density 0.5", "--fuzz", "not both"},
                      BadInput{"check -n 100000 --density 0.1", "--n", "a smaller --n"},
                      // the planner's sparse flags
                      BadInput{"model plan --density 0", "--density", "0 < P <= 1"},
                      BadInput{"model plan --density 2", "--density", "0 < P <= 1"},
                      BadInput{"model plan --global 0", "--global", "integers 1 .."},
                      BadInput{"model plan -N 64 --global 65", "--global", "min(Nq, Nk) = 64"},
                      BadInput{"model plan --density 0.5 --global 4", "--density", "not BigBird"},
                      // the decode model's shape flags
                      BadInput{"model decode --heads 32/5", "--heads", "Hkv dividing Hq"},
                      BadInput{"model decode --heads x", "--heads", "Hq/Hkv"},
                      BadInput{"model decode --batch 0", "--batch", "integers >= 1"},
                      BadInput{"model decode --ctx -4", "--ctx", "integers >= 1"},
                      BadInput{"model decode --page -1", "--page", "integers >= 0"},
                      BadInput{"model decode --d 96", "--d", "64, 128, 256"},
                      BadInput{"model decode --splits 0", "--splits", "integers 1 .. 128"},
                      BadInput{"model decode --fit out.json", "--fit", "--measured FILE"}));

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
                           "--threads", "--json", "--mode", "--density", "--block", "--global"})
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

// bf16 inputs on the CPU: the bench also measures the bf16 GEMM (oneDNN, loaded at run time; issue 21) and reports
// each result against it; where no oneDNN loads it says so and the JSON's rate is null; f32 runs have no such ceiling.
TEST(Cli, BenchBf16ReportsTheBf16GemmCeiling) {
  const std::string js = temp_path("bench_bf16.json");
  const std::string args = "bench --n 64 --hq 2 -d 32 --tokens 128 --reps 1 --sgemm-n 128 --methods flash --device cpu ";
  const Result r = run(args + "--dtype bf16 --json " + js);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto j = nlohmann::json::parse(slurp(js));
  ASSERT_TRUE(j.contains("bf16_gemm")) << j.dump();
  const std::string lib = j["bf16_gemm"]["library"].get<std::string>();
  if (!lib.empty()) {
    ASSERT_TRUE(j["bf16_gemm"]["gflops"].is_number()) << j["bf16_gemm"].dump();
    EXPECT_GT(j["bf16_gemm"]["gflops"].get<double>(), 0.0);
    for (const auto& res : j["results"]) EXPECT_GT(res.value("bf16_gemm_ratio", 0.0), 0.0) << res.dump();
    EXPECT_NE(r.out.find("/BF16 GEMM"), std::string::npos) << r.out;
    EXPECT_NE(r.out.find(lib), std::string::npos) << r.out;
  } else {
    EXPECT_TRUE(j["bf16_gemm"]["gflops"].is_null()) << j["bf16_gemm"].dump();
    EXPECT_NE(r.out.find("bf16 GEMM ceiling: not measured"), std::string::npos) << r.out;
  }
  setenv("FLATATTN_ONEDNN_LIB", "/nonexistent/libdnnl.so", 1);  // a oneDNN that cannot load: said, not skipped
  const Result m = run(args + "--dtype bf16");
  unsetenv("FLATATTN_ONEDNN_LIB");
  ASSERT_EQ(m.code, 0) << m.out << m.err;
  EXPECT_NE(m.out.find("bf16 GEMM ceiling: not measured"), std::string::npos) << m.out;
  EXPECT_EQ(m.out.find("/BF16 GEMM"), std::string::npos) << m.out;
  const Result f = run(args + "--dtype f32");
  ASSERT_EQ(f.code, 0) << f.out << f.err;
  EXPECT_EQ(f.out.find("bf16 GEMM"), std::string::npos) << f.out;
  std::remove(js.c_str());
}

// ---- sparse attention flags (issue 16): the visited fraction and FLOPs of the report, and the whole-sequence
// check against the fp64 oracle with `flatattn check`'s judge.

nlohmann::json run_json(const std::string& args) {
  const Result r = run("run --reps 1 --json " + args);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.out << r.err;
  return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

void expect_whole_check_passes(const nlohmann::json& j) {
  ASSERT_TRUE(j.contains("results")) << j.dump();
  const auto& fused = j["results"][0];
  EXPECT_TRUE(fused["check"]["pass"].get<bool>()) << fused.dump();
  EXPECT_EQ(fused["check"]["unwritten"], 0);
  EXPECT_NE(fused["check"]["what"].get<std::string>().find("whole sequences"), std::string::npos) << fused.dump();
  EXPECT_TRUE(j["results"][1].contains("skipped")) << "naive attention is dense: " << j["results"][1].dump();
}

// Density 0.25 over 32 x 32 blocks of a 1024 x 1024 score matrix (1024 blocks): the visited fraction is the
// listed blocks' share, near 0.25 (a binomial draw, sd 0.014), and without a band every pair of a visited block
// is visible, so the FLOPs are 4 B Hq D x 32 x 32 per visited block.
TEST(CliSparse, DensityQuarterCountsVisitedBlocks) {
  const auto j = run_json("-b 2 -n 1024 --hq 2 -d 32 --no-causal --density 0.25 --block 32,32 --seed 3");
  ASSERT_TRUE(j.contains("sparse")) << j.dump();
  const auto& sp = j["sparse"];
  EXPECT_EQ(sp["blocks_total"], 1024);
  const double visited = sp["blocks_visited"].get<double>();
  EXPECT_DOUBLE_EQ(sp["visited_fraction"].get<double>(), visited / 1024);
  EXPECT_NEAR(visited / 1024, 0.25, 0.07);
  EXPECT_DOUBLE_EQ(j["flops"].get<double>(), 4.0 * 2 * 2 * 32 * visited * 32 * 32);
  expect_whole_check_passes(j);
}

// Density 1 lists every block and keeps the band inside them: the FLOPs equal the dense causal run's
// (forward_flops), and fwd+bwd passes the whole check (dq, dk, dv).
TEST(CliSparse, DensityOneMatchesTheDenseCount) {
  const auto dense = run_json("-b 1 -n 300 --hq 2 -d 32 --seed 4 --no-naive");
  const auto sparse = run_json("-b 1 -n 300 --hq 2 -d 32 --seed 4 --density 1 --block 64,32 --mode fwdbwd");
  ASSERT_TRUE(sparse.contains("sparse"));
  EXPECT_EQ(sparse["sparse"]["visited_fraction"].get<double>(), 1.0);
  EXPECT_DOUBLE_EQ(sparse["flops"].get<double>(), 3.5 * dense["flops"].get<double>());
  expect_whole_check_passes(sparse);
}

// Longformer with window (0, 0) and G = 2 globals at 0 and 512 of N = 1024, non-causal: visible pairs
// |diag U rows U cols| = N + 2 G N - 2 G - G^2 + G = 1024 + 4096 - 2 - 4 = 5114 per (sequence, head); of the
// 8 x 8 blocks of 128 the diagonal (8), block rows 0 and 4 (16) and block columns 0 and 4 (16) are visited:
// 8 + 16 + 16 - 2 - 2 - 4 + 2 = 34.
TEST(CliSparse, LocalGlobalVisitsTheBandAndTheGlobalBlocks) {
  const auto j = run_json("-b 2 -n 1024 --hq 2 -d 32 --no-causal --window 0,0 --global 2 --seed 5");
  ASSERT_TRUE(j.contains("sparse")) << j.dump();
  EXPECT_EQ(j["sparse"]["blocks_visited"], 34);
  EXPECT_EQ(j["sparse"]["blocks_total"], 64);
  EXPECT_DOUBLE_EQ(j["sparse"]["visited_fraction"].get<double>(), 34.0 / 64);
  EXPECT_DOUBLE_EQ(j["sparse"]["visible_pairs"].get<double>(), 5114);
  EXPECT_DOUBLE_EQ(j["flops"].get<double>(), 4.0 * 2 * 2 * 32 * 5114);
  expect_whole_check_passes(j);
}

// Causal local + global (fwd+bwd) and BigBird (random full blocks + window + globals, non-causal) pass.
TEST(CliSparse, CausalLocalGlobalAndBigBirdPass) {
  const auto lg = run_json("-b 2 -n 700 --hq 2 --hkv 1 -d 32 --window 64 --global 3 --mode fwdbwd --seed 6");
  expect_whole_check_passes(lg);
  EXPECT_LT(lg["sparse"]["visited_fraction"].get<double>(), 1.0);
  const auto bb = run_json("-b 2 -n 1024 --hq 2 -d 32 --no-causal --window 64,64 --global 4 --density 0.2 --seed 7");
  expect_whole_check_passes(bb);
  EXPECT_GT(bb["sparse"]["visible_pairs"].get<double>(), 0);
}

TEST(CliSparse, TextReportSaysHowFlopsAreCounted) {
  const Result r = run("run -b 1 -n 512 --hq 1 -d 32 --density 0.25 --seed 8 --reps 1");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"visited fraction", "visited blocks", "FLOPs and GFLOP/s count only", "from seed 8", "PASS"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
  EXPECT_EQ(r.out.find("FAIL"), std::string::npos) << r.out;
}

TEST(CliSparse, BenchReportsTheVisitedFractionPerN) {
  const std::string js = temp_path("sparse_bench.json");
  const Result r = run("bench -q --n 256,512 --hq 2 -d 16 --tokens 512 --reps 1 --sgemm-n 64 --methods flash,naive "
                       "--density 0.5 --block 64,64 --seed 9 --json " + js);
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("visited fraction"), std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(slurp(js));
  for (const auto& res : j["results"]) {
    ASSERT_TRUE(res.contains("sparse")) << res.dump();
    const auto& sp = res["sparse"];
    const std::int64_t nb = res["N"].get<std::int64_t>() / 64;
    EXPECT_EQ(sp["blocks_total"].get<std::int64_t>(), nb * nb);
    if (res["label"] == "naive") {
      EXPECT_TRUE(res.contains("skipped")) << res.dump();
      continue;
    }
    EXPECT_TRUE(res["check"]["pass"].get<bool>()) << res.dump();
    EXPECT_DOUBLE_EQ(res["flops"].get<double>(),
                     4.0 * res["B"].get<double>() * 2 * 16 * sp["visible_pairs"].get<double>());
  }
  std::remove(js.c_str());
}

// A sequence too large for the whole-problem oracle (4 Hq D Nq Nk = 2.6e10 flops > 2e10) is reported as not
// checked, with the fix, and the run still succeeds (1 % of 512 x 512 blocks keeps the kernel cheap).
TEST(CliSparse, TooLargeForTheOracleIsNotCheckedButRuns) {
  const auto j = run_json("-b 1 -n 20000 --hq 1 -d 16 --no-causal --density 0.01 --block 512,512 --seed 10");
  ASSERT_TRUE(j.contains("results")) << j.dump();
  const auto& check = j["results"][0]["check"];
  ASSERT_TRUE(check.contains("not_checked")) << check.dump();
  EXPECT_NE(check["not_checked"].get<std::string>().find("smaller --n"), std::string::npos) << check.dump();
}

// ---- `flatattn check` on a sparse workload of one's own: forward (flash, flat) and backward per dtype, whole
// tensors against the oracle, with the mask `flatattn run` builds from the same flags and --seed.

nlohmann::json check_json(const std::string& args) {
  const Result r = run("check --json " + args);
  EXPECT_EQ(r.code, 0) << args << "\n" << r.out << r.err;
  return r.code == 0 ? nlohmann::json::parse(r.out) : nlohmann::json::object();
}

/// Every row passes, and there are `dtypes` x (out flash, out flat, dq, dk, dv) of them, all the workload's.
void expect_workload_rows_pass(const nlohmann::json& j, int dtypes, const std::string& label) {
  ASSERT_TRUE(j.contains("rows")) << j.dump();
  EXPECT_EQ(j["rows"].size(), 5u * dtypes) << j.dump();
  EXPECT_EQ(j["failed"], 0);
  EXPECT_EQ(j["skipped"], 0);
  for (const auto& row : j["rows"]) {
    EXPECT_EQ(row["result"], "PASS") << row.dump();
    EXPECT_NE(row["case"].get<std::string>().find(label), std::string::npos) << row.dump();
  }
}

// Block-sparse at density 0.25 over 32 x 64 blocks, causal (the band inside the blocks), f32 and bf16.
TEST(CliCheckSparse, DensityWorkloadPassesForwardAndBackward) {
  const auto j = check_json("-n 200 --hq 2 -d 32 --density 0.25 --block 32,64 --dtype f32,bf16 --seed 11");
  expect_workload_rows_pass(j, 2, "workload density=0.25 block=32x64");
  EXPECT_EQ(j["workload"]["Nq"], 200);
  EXPECT_EQ(j["workload"]["sparse"]["block"], nlohmann::json({32, 64}));
  EXPECT_EQ(j["sparse"]["blocks_total"], 7 * 4);
  EXPECT_LT(j["sparse"]["visited_fraction"].get<double>(), 1.0);
}

// Causal local + global with GQA, and BigBird (random full blocks + window + globals, non-causal).
TEST(CliCheckSparse, LocalGlobalAndBigBirdPass) {
  expect_workload_rows_pass(check_json("-n 300 --hq 2 --hkv 1 -d 32 --window 40 --global 3 --dtype f32 --seed 12"), 1,
                            "workload global=3");
  expect_workload_rows_pass(check_json("-n 256 --hq 2 -d 32 --no-causal --window 16,16 --global 2 --density 0.2 "
                                       "--block 64 --dtype bf16 --seed 13"),
                            1, "workload density=0.2 block=64x64 global=2");
}

// The check judges the mask `flatattn run` uses for the same flags and seed: its report shows the same visited
// blocks and visible pairs, and every case was given lists of exactly those blocks (BigBird's added local +
// global blocks included; make_case's own random lists would have other blocks).
TEST(CliCheckSparse, ChecksTheMaskRunUses) {
  const std::string flags = "-b 1 -n 512 --hq 1 -d 16 --no-causal --window 8,8 --global 3 --density 0.3 --block 32 --seed 14";
  const auto c = check_json(flags + " --dtype f32");
  const auto r = run_json(flags + " --no-naive");
  ASSERT_TRUE(c.contains("sparse") && r.contains("sparse")) << c.dump() << r.dump();
  EXPECT_EQ(c["sparse"]["blocks_visited"], r["sparse"]["blocks_visited"]);
  EXPECT_EQ(c["sparse"]["visible_pairs"], r["sparse"]["visible_pairs"]);
  EXPECT_EQ(c["sparse"]["mask"], r["sparse"]["mask"]);
  ASSERT_EQ(c["rows"].size(), 5u);
  for (const auto& row : c["rows"]) {
    ASSERT_TRUE(row.contains("listed_blocks")) << row.dump();
    EXPECT_EQ(row["listed_blocks"], r["sparse"]["blocks_visited"]) << row.dump();
  }
}

// The text report names the workload and its visited blocks; without workload flags the sweep runs as before.
TEST(CliCheckSparse, TextReportAndTheSweepUnchanged) {
  const Result r = run("check -n 128 --hq 1 -d 16 --density 0.5 --block 16 --dtype f32 --seed 15");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"workload: B=2 Nq=Nk=128 Hq=1", "visited blocks", "from seed 15", "5 passed, 0 failed"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
  const Result help = run("check --help");
  for (const char* flag : {"--density", "--block", "--global", "--n", "--window", "--no-causal"})
    EXPECT_NE(help.out.find(flag), std::string::npos) << "check --help lacks " << flag;
}

// ---- `flatattn model plan --density / --global`: the predicted time and FLOPs count only visited blocks.

/// The chosen variant's predicted time in seconds from a plan's text ("chosen: ..., predicted 1.23 ms").
double predicted_s(const std::string& out) {
  const std::size_t at = out.find("predicted ");
  if (at == std::string::npos) return -1;
  std::istringstream in(out.substr(at + 10));
  double v = 0;
  std::string unit;
  in >> v >> unit;
  return v * (unit == "s" ? 1.0 : unit == "ms" ? 1e-3 : 1e-6);
}

TEST(CliModelPlan, DensityTenthIsWellBelowDense) {
  const Result dense = run("model plan -N 16384 --hq 16 -D 128");
  const Result sparse = run("model plan -N 16384 --hq 16 -D 128 --density 0.1");
  ASSERT_EQ(dense.code, 0) << dense.err;
  ASSERT_EQ(sparse.code, 0) << sparse.err;
  for (const char* field : {"density=0.1", "visited fraction", "FLOPs:", "visited blocks only", "sparse calls"})
    EXPECT_NE(sparse.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << sparse.out;
  EXPECT_GT(predicted_s(dense.out), 0) << dense.out;
  EXPECT_LT(predicted_s(sparse.out), 0.25 * predicted_s(dense.out)) << sparse.out << dense.out;
  // 4 B Hq D N^2 / 10 = 4 x 16 x 128 x 16384^2 / 10 = 219.9 GFLOP, against the dense 2199 GFLOP.
  EXPECT_NE(sparse.out.find("FLOPs: 219.9 GFLOP"), std::string::npos) << sparse.out;
  EXPECT_NE(sparse.out.find("without its sparse mask: 2199 GFLOP"), std::string::npos) << sparse.out;
}

// Longformer window (0, 0) with globals 0 and 512 of N = 1024: 5114 visible pairs, 4 x 2 x 64 x 5114 FLOPs.
TEST(CliModelPlan, GlobalCountsTheLocalGlobalPairs) {
  const Result r = run("model plan -N 1024 --hq 2 -D 64 --window-left 0 --window-right 0 --global 2");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"global=2", "local + global, window (0,0), 2 global positions", "visited fraction",
                            "FLOPs: 0.002618 GFLOP"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
}

}  // namespace

// ---- `flatattn model decode`: per split count, the model's pick next to the rule's; against a bench_decode file.
TEST(CliModelDecode, PrintsBothPicks) {
  const Result r = run("model decode --batch 1 --ctx 8192 --heads 32/8 --page 16");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"step us", "GB/s", "model's pick:", "rule's pick:", "  model", "rule"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
}

TEST(CliModelDecode, MeasuredFilePrintsErrorsAndPicks) {
  const Result r = run(std::string("model decode --measured '") + FLATATTN_SOURCE_DIR +
                       "/bench/results/stop33-decode-splits-h100-a74672a.json'");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  for (const char* field : {"median |error|", "picks on the", "within 2 % of the fastest: model"})
    EXPECT_NE(r.out.find(field), std::string::npos) << "missing '" << field << "' in\n" << r.out;
  // A file that is not a bench_decode JSON is bad input (exit 2, one line).
  const Result bad = run(std::string("model decode --measured '") + FLATATTN_SOURCE_DIR + "/data/model/hardware/h100.json'");
  EXPECT_EQ(bad.code, 2) << bad.out << bad.err;
  EXPECT_EQ(lines(bad.err), 1) << bad.err;
  EXPECT_NE(bad.err.find("rows"), std::string::npos) << bad.err;
}
