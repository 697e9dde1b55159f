// Internal: typed, range-checked reading of the model's JSON data files. Every error names the file,
// the key (dotted path), the value found and the expected type/range. Only .cc files include this.
#pragma once

#include <cstdint>
#include <filesystem>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace flatattn::model::detail {

using Json = nlohmann::json;

/// Throws Error(invalid_argument): "<file>: <key> = <value>: expected <expected>; fix: <fix>".
[[noreturn]] void bad_value(const std::string& file, const std::string& key, const std::string& value,
                            const std::string& expected, const std::string& fix = "");

/// Parses a JSON file; a missing file or a syntax error is an Error naming the file (and byte offset).
Json read_json_file(const std::filesystem::path& file);

/// Resolves `name_or_path` (a preset name in <data root>/model/<kind_dir>/ or a file path), reads it,
/// and applies its "base" chain (the file's keys override its base's, objects merged key by key).
/// `file` receives the resolved path of the top file.
Json load_layered(std::string_view kind_dir, std::string_view name_or_path, std::string& file);

/// A view of one JSON object with typed getters.
class Reader {
 public:
  Reader(const Json& j, std::string file, std::string prefix = "");

  [[nodiscard]] bool has(const std::string& key) const;
  /// A number in [lo, hi]; `required` false returns `fallback` when the key is absent.
  double number(const std::string& key, double lo, double hi, bool required = true, double fallback = 0) const;
  /// An integer in [lo, hi].
  std::int64_t integer(const std::string& key, std::int64_t lo, std::int64_t hi, bool required = true,
                    std::int64_t fallback = 0) const;
  std::string string(const std::string& key, bool required = true, const std::string& fallback = "") const;
  bool boolean(const std::string& key, bool required = true, bool fallback = false) const;
  /// A nested object (must be an object).
  Reader object(const std::string& key) const;
  /// A list of integers in [lo, hi].
  std::vector<std::int64_t> integers(const std::string& key, std::int64_t lo, std::int64_t hi) const;
  /// Rejects keys not in `allowed` ("notes", "base" and keys starting with '_' are always allowed:
  /// they annotate the file). Catches misspelled keys.
  void only(std::initializer_list<std::string_view> allowed) const;

  [[nodiscard]] const Json& json() const { return j_; }
  [[nodiscard]] const std::string& file() const { return file_; }
  [[nodiscard]] std::string key(const std::string& k) const { return prefix_.empty() ? k : prefix_ + "." + k; }

 private:
  const Json& at(const std::string& key) const;
  const Json& j_;
  std::string file_, prefix_;
};

}  // namespace flatattn::model::detail
