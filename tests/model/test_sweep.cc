// Sweeps and their exports: the `flatattn model` default (BERT, cloud, N = 512 ... 64K, all dataflows),
// CSV and JSON contents, GPU sweeps and the layer (end-to-end) scope.
#include <gtest/gtest.h>

#include <cmath>
#include <sstream>

#include <nlohmann/json.hpp>

#include "flatattn/error.h"
#include "src/model/export.h"
#include "src/model/sweep.h"

using namespace flatattn;
using namespace flatattn::model;

TEST(Sweep, DefaultSweepAndExports) {
  const SweepResult r = sweep(load_hardware("cloud"), load_workload("bert"), SweepOptions{});
  EXPECT_EQ(r.options.ns, default_seq_lens());
  ASSERT_EQ(r.rows.size(), 32u);
  const std::string csv = to_csv(r);
  std::istringstream in(csv);
  std::string line;
  int lines = 0;
  std::getline(in, line);
  EXPECT_EQ(line.substr(0, 30), "hardware,workload,scope,mapspa");
  while (std::getline(in, line)) {
    ++lines;
    EXPECT_EQ(line.rfind("cloud,BERT,attention,full,", 0), 0u) << line;
  }
  EXPECT_EQ(lines, 32);

  const nlohmann::json j = nlohmann::json::parse(to_json(r));
  ASSERT_EQ(j["rows"].size(), 32u);
  EXPECT_EQ(j["workload"]["batch"], 64);
  const double g = j["geomean"]["flat_over_flex"];
  EXPECT_DOUBLE_EQ(g, r.geomean_speedup(DataflowKind::flat, DataflowKind::flex));
  EXPECT_GT(g, 1.0);
  for (const auto& row : j["rows"]) {
    const SweepRow* s = r.find(row["n"], parse_dataflow(row["dataflow"].get<std::string>()));
    ASSERT_NE(s, nullptr);
    EXPECT_DOUBLE_EQ(row["runtime_s"].get<double>(), s->total_s());
    EXPECT_DOUBLE_EQ(row["offchip_bytes"].get<double>(), s->cost.offchip_bytes);
  }
}

TEST(Sweep, LayerScopeAddsTheSameFcTimeToEveryDataflow) {
  SweepOptions o;
  o.ns = {512, 16384};
  o.scope = Scope::layer;
  const SweepResult r = sweep(load_hardware("edge"), load_workload("bert"), o);
  for (std::int64_t n : o.ns) {
    const double fc = r.find(n, DataflowKind::flex)->fc_s;
    EXPECT_GT(fc, 0);
    for (DataflowKind d : r.options.dataflows) EXPECT_EQ(r.find(n, d)->fc_s, fc);
  }
  // Attention's share of the layer grows with N (paper Sec. 7: 12 % at 512 ... 94 % at 64K).
  auto share = [&](std::int64_t n) {
    const SweepRow* f = r.find(n, DataflowKind::flex);
    return f->cost.runtime_s / f->total_s();
  };
  EXPECT_LT(share(512), 0.3);
  EXPECT_GT(share(16384), 0.75);
}

TEST(Sweep, GpuSweep) {
  SweepOptions o;
  o.ns = {512, 2048, 16384};
  const SweepResult r = sweep(load_hardware("h100"), load_workload("llama3-8b"), o);
  ASSERT_EQ(r.rows.size(), 12u);
  for (std::int64_t n : o.ns) {
    const SweepRow* flash = r.find(n, DataflowKind::flash);
    ASSERT_TRUE(flash->cost.feasible);
    EXPECT_GT(flash->cost.utilization, 0.05);
    EXPECT_LT(flash->cost.utilization, 1.0);
    // Fused beats materializing the N x N scores at long N.
    if (n >= 2048) EXPECT_GT(r.speedup(n, DataflowKind::flash, DataflowKind::naive), 1.0);
  }
  // FLAT's logit block no longer fits shared memory at 16K: infeasible with a reason.
  const SweepRow* flat = r.find(16384, DataflowKind::flat);
  EXPECT_FALSE(flat->cost.feasible);
  EXPECT_FALSE(flat->cost.infeasible_reason.empty());
  EXPECT_TRUE(std::isnan(r.speedup(16384, DataflowKind::flat, DataflowKind::flex)));
  // Options that make no sense on a GPU are errors.
  o.buffer_bytes = 1e6;
  EXPECT_THROW(sweep(load_hardware("h100"), load_workload("bert"), o), Error);
  o.buffer_bytes.reset();
  o.scope = Scope::layer;
  EXPECT_THROW(sweep(load_hardware("h100"), load_workload("bert"), o), Error);
}

TEST(Sweep, BadOptions) {
  SweepOptions o;
  o.ns = {0};
  EXPECT_THROW(sweep(load_hardware("edge"), load_workload("bert"), o), Error);
  EXPECT_THROW(parse_dataflow("fastest"), Error);
  EXPECT_THROW(parse_mapspace("all"), Error);
  o.ns = {512};
  o.buffer_bytes = -1;
  EXPECT_THROW(sweep(load_hardware("edge"), load_workload("bert"), o), Error);
}
