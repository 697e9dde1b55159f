#include "src/model/json_reader.h"

#include <fstream>
#include <sstream>

#include "flatattn/error.h"
#include "src/model/data_dir.h"

namespace flatattn::model::detail {

namespace {

std::string fmt_num(double x) {
  std::ostringstream s;
  s << x;
  return s.str();
}

std::string dump(const Json& j) {
  std::string s = j.dump();
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

/// Objects merge key by key (the override wins); anything else is replaced.
void merge(Json& base, const Json& over) {
  for (auto it = over.begin(); it != over.end(); ++it) {
    if (it.key() == "base") continue;
    if (it->is_object() && base.contains(it.key()) && base[it.key()].is_object())
      merge(base[it.key()], *it);
    else
      base[it.key()] = *it;
  }
}

}  // namespace

void bad_value(const std::string& file, const std::string& key, const std::string& value,
               const std::string& expected, const std::string& fix) {
  throw Error(Error::Kind::invalid_argument, file + ": " + key, value, "expected " + expected,
              fix.empty() ? "edit " + file + " (data/model/README.md documents the format)" : fix);
}

Json read_json_file(const std::filesystem::path& file) {
  std::ifstream in(file);
  if (!in)
    throw Error(Error::Kind::invalid_argument, "model data file", file.string(), "cannot be opened",
                "check the path and its permissions");
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    Json j = Json::parse(ss.str());
    if (!j.is_object()) bad_value(file.string(), "(top level)", dump(j), "a JSON object { ... }");
    return j;
  } catch (const Json::parse_error& e) {
    throw Error(Error::Kind::invalid_argument, "model data file " + file.string(),
                "byte " + std::to_string(e.byte), std::string("is not valid JSON: ") + e.what(),
                "fix the JSON syntax (no comments or trailing commas; annotate with \"notes\")");
  }
}

Json load_layered(std::string_view kind_dir, std::string_view name_or_path, std::string& file) {
  std::filesystem::path path = resolve_data_file(kind_dir, name_or_path);
  file = path.string();
  Json top = read_json_file(path);
  Json result = top;
  std::vector<std::string> chain{path.string()};
  Json cur = top;
  while (cur.contains("base")) {
    if (!cur["base"].is_string())
      bad_value(chain.back(), "base", dump(cur["base"]), "a string: a preset name or a file path");
    if (chain.size() > 8)
      bad_value(chain.back(), "base", dump(cur["base"]), "at most 8 levels of \"base\" (a cycle?)");
    const std::string base_name = cur["base"].get<std::string>();
    // A relative path is relative to the file that names it; anything else resolves as usual.
    const std::filesystem::path sibling = std::filesystem::path(chain.back()).parent_path() / base_name;
    std::error_code ec;
    const bool path_like = base_name.find('/') != std::string::npos ||
                           (base_name.size() > 5 && base_name.substr(base_name.size() - 5) == ".json");
    const std::filesystem::path base_path = path_like && std::filesystem::is_regular_file(sibling, ec)
                                                ? sibling
                                                : resolve_data_file(kind_dir, base_name);
    Json base = read_json_file(base_path);
    chain.push_back(base_path.string());
    Json merged = base;
    merge(merged, result);
    merged.erase("base");
    if (base.contains("base")) merged["base"] = base["base"];
    result = merged;
    cur = base;
  }
  result.erase("base");
  return result;
}

Reader::Reader(const Json& j, std::string file, std::string prefix)
    : j_(j), file_(std::move(file)), prefix_(std::move(prefix)) {}

bool Reader::has(const std::string& key) const { return j_.contains(key); }

const Json& Reader::at(const std::string& k) const {
  if (!j_.contains(k)) bad_value(file_, key(k), "(missing)", "this key to be present");
  return j_.at(k);
}

double Reader::number(const std::string& k, double lo, double hi, bool required, double fallback) const {
  if (!required && !has(k)) return fallback;
  const Json& v = at(k);
  const std::string range = "a number in [" + fmt_num(lo) + ", " + fmt_num(hi) + "]";
  if (!v.is_number()) bad_value(file_, key(k), dump(v), range);
  const double x = v.get<double>();
  if (!(x >= lo && x <= hi)) bad_value(file_, key(k), dump(v), range);
  return x;
}

std::int64_t Reader::integer(const std::string& k, std::int64_t lo, std::int64_t hi, bool required,
                          std::int64_t fallback) const {
  if (!required && !has(k)) return fallback;
  const Json& v = at(k);
  const std::string range = "an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!v.is_number_integer()) bad_value(file_, key(k), dump(v), range);
  const std::int64_t x = v.get<std::int64_t>();
  if (x < lo || x > hi) bad_value(file_, key(k), dump(v), range);
  return x;
}

std::string Reader::string(const std::string& k, bool required, const std::string& fallback) const {
  if (!required && !has(k)) return fallback;
  const Json& v = at(k);
  if (!v.is_string()) bad_value(file_, key(k), dump(v), "a string");
  return v.get<std::string>();
}

bool Reader::boolean(const std::string& k, bool required, bool fallback) const {
  if (!required && !has(k)) return fallback;
  const Json& v = at(k);
  if (!v.is_boolean()) bad_value(file_, key(k), dump(v), "true or false");
  return v.get<bool>();
}

Reader Reader::object(const std::string& k) const {
  const Json& v = at(k);
  if (!v.is_object()) bad_value(file_, key(k), dump(v), "an object { ... }");
  return Reader(v, file_, key(k));
}

std::vector<std::int64_t> Reader::integers(const std::string& k, std::int64_t lo, std::int64_t hi) const {
  const Json& v = at(k);
  const std::string what =
      "a non-empty list of integers in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]";
  if (!v.is_array() || v.empty()) bad_value(file_, key(k), dump(v), what);
  std::vector<std::int64_t> out;
  for (const Json& x : v) {
    if (!x.is_number_integer() || x.get<std::int64_t>() < lo || x.get<std::int64_t>() > hi)
      bad_value(file_, key(k), dump(v), what);
    out.push_back(x.get<std::int64_t>());
  }
  return out;
}

void Reader::only(std::initializer_list<std::string_view> allowed) const {
  for (auto it = j_.begin(); it != j_.end(); ++it) {
    const std::string& k = it.key();
    if (k == "notes" || k == "base" || (!k.empty() && k[0] == '_')) continue;
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || a == k;
    if (!ok) {
      std::string list;
      for (std::string_view a : allowed) list += (list.empty() ? "" : ", ") + std::string(a);
      bad_value(file_, key(k), dump(*it), "one of the known keys: " + list,
                "remove or rename the key in " + file_ + " (annotations go under \"notes\")");
    }
  }
}

}  // namespace flatattn::model::detail
