#include "cli/machine.h"

#include <unistd.h>

#include <ctime>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "build_info.h"
#include "flatattn/version.h"

namespace flatattn::cli {

namespace {
std::string field(const char* path, const std::string& key) {
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line))
    if (line.rfind(key, 0) == 0) {
      const auto colon = line.find(':');
      std::string v = colon == std::string::npos ? "" : line.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      return v;
    }
  return "";
}
}  // namespace

Machine this_machine() {
  Machine m;
  m.cpu = field("/proc/cpuinfo", "model name");
  if (m.cpu.empty()) m.cpu = "unknown CPU";
  m.logical_cpus = static_cast<int>(::sysconf(_SC_NPROCESSORS_ONLN));
  m.mem_gib = std::atof(field("/proc/meminfo", "MemTotal").c_str()) / (1024.0 * 1024.0);
  std::ifstream la("/proc/loadavg");
  la >> m.load1;
  m.commit = FLATATTN_CLI_COMMIT;
  m.version = FLATATTN_VERSION;
  const std::time_t now = std::time(nullptr);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  m.date = buf;
  return m;
}

nlohmann::json Machine::to_json() const {
  return {{"cpu", cpu}, {"logical_cpus", logical_cpus}, {"mem_gib", mem_gib}, {"load1", load1},
          {"commit", commit}, {"date", date}, {"flatattn_version", version}};
}

std::string Machine::str() const {
  return fmt::format("{} ({} logical CPUs, {:.0f} GiB), load {:.2f}; flatattn {} @ {}; {}", cpu, logical_cpus, mem_gib,
                     load1, version, commit, date);
}

}  // namespace flatattn::cli
