// The measurement processes of cli/child.h: results come back, errors keep their kind, a killed child
// is reported, and the peak-memory difference sees what a child allocated.
#include <gtest/gtest.h>

#include <csignal>
#include <cstring>
#include <vector>

#include "cli/child.h"
#include "flatattn/error.h"

namespace flatattn::cli {
namespace {

using nlohmann::json;

TEST(Child, ReturnsTheJsonAndItsPeakRss) {
  const json r = run_in_child([] { return json{{"answer", 42}}; });
  EXPECT_EQ(r["answer"], 42);
  EXPECT_GT(r["maxrss_bytes"].get<double>(), 0.0);
}

TEST(Child, PeakDifferenceSeesAnAllocation) {
  constexpr std::size_t kBytes = 96u << 20;
  const json base = run_in_child([] { return json::object(); });
  const json big = run_in_child([] {
    std::vector<char> v(kBytes);
    std::memset(v.data(), 1, v.size());  // touch every page
    return json{{"sum", static_cast<int>(v[12345])}};
  });
  const double diff = big["maxrss_bytes"].get<double>() - base["maxrss_bytes"].get<double>();
  EXPECT_GT(diff, 0.95 * kBytes);
  EXPECT_LT(diff, 1.10 * kBytes);
}

TEST(Child, LibraryErrorsKeepTheirKindAndArgument) {
  const json r = run_in_child([]() -> json {
    throw Error(Error::Kind::invalid_argument, "q", "head dim D = 0", "D must be >= 1", "pass D >= 1");
  });
  ASSERT_TRUE(r.contains("error"));
  try {
    rethrow_child_error(r);
    FAIL() << "no rethrow";
  } catch (const Error& e) {
    EXPECT_EQ(e.kind(), Error::Kind::invalid_argument);
    EXPECT_EQ(e.argument(), "q");
    EXPECT_EQ(e.value(), "head dim D = 0");
  }
}

TEST(Child, AKilledChildIsReported) {
  const json r = run_in_child([]() -> json {
    std::raise(SIGKILL);
    return json::object();
  });
  ASSERT_TRUE(r.contains("error"));
  EXPECT_EQ(r["error"]["kind"], "killed");
  EXPECT_NE(child_error_line(r).find("signal 9"), std::string::npos) << child_error_line(r);
}

}  // namespace
}  // namespace flatattn::cli
