// Plain-text tables and number formats of the CLI's human-readable output.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>

namespace flatattn::cli {

/// "812 B", "1.5 KiB", "12.0 MiB", "1.00 GiB"; "-" for negative (not measured).
inline std::string fmt_bytes(double b) {
  if (b < 0 || std::isnan(b)) return "-";
  const char* unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024.0 && u < 4) {
    b /= 1024.0;
    ++u;
  }
  if (u == 0) return fmt::format("{:.0f} B", b);
  const int digits = b < 10 ? 2 : b < 100 ? 1 : 0;
  return fmt::format("{:.{}f} {}", b, digits, unit[u]);
}

/// Milliseconds with three significant digits.
inline std::string fmt_ms(double ms) {
  return ms < 10 ? fmt::format("{:.3f}", ms) : ms < 100 ? fmt::format("{:.2f}", ms) : fmt::format("{:.1f}", ms);
}

/// Columns are left-aligned unless marked right-aligned; widths follow the widest cell.
class Table {
 public:
  explicit Table(std::vector<std::string> header, std::vector<bool> right = {})
      : header_(std::move(header)), right_(std::move(right)) {
    right_.resize(header_.size(), false);
  }
  void add(std::vector<std::string> row) {
    row.resize(header_.size());
    rows_.push_back(std::move(row));
  }
  [[nodiscard]] std::string str() const {
    std::vector<std::size_t> w(header_.size());
    for (std::size_t c = 0; c < w.size(); ++c) {
      w[c] = header_[c].size();
      for (const auto& r : rows_) w[c] = std::max(w[c], r[c].size());
    }
    std::string out;
    auto line = [&](const std::vector<std::string>& r) {
      std::string l;
      for (std::size_t c = 0; c < w.size(); ++c) {
        const std::string pad(w[c] - r[c].size(), ' ');
        l += (c ? "  " : "") + (right_[c] ? pad + r[c] : r[c] + (c + 1 < w.size() ? pad : ""));
      }
      out += l + "\n";
    };
    line(header_);
    for (const auto& r : rows_) line(r);
    return out;
  }

 private:
  std::vector<std::string> header_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace flatattn::cli
