// Facts recorded with every measurement: machine, commit, date, load (docs/design.md, "Performance method": absolute numbers
// hold only for the machine they were taken on).
#pragma once

#include <string>

#include <nlohmann/json.hpp>

namespace flatattn::cli {

struct Machine {
  std::string cpu;       ///< /proc/cpuinfo "model name"
  int logical_cpus = 0;  ///< online logical CPUs
  double mem_gib = 0;    ///< MemTotal
  double load1 = 0;      ///< 1-minute load average when measured
  std::string commit;    ///< of the sources this binary was built from
  std::string date;      ///< UTC, ISO 8601
  std::string version;   ///< flatattn version
  [[nodiscard]] nlohmann::json to_json() const;
  [[nodiscard]] std::string str() const;  ///< one line
};

Machine this_machine();

}  // namespace flatattn::cli
