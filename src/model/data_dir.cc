#include "src/model/data_dir.h"

#include <dlfcn.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "flatattn/error.h"

#ifndef FLATATTN_DATA_SOURCE_DIR
#define FLATATTN_DATA_SOURCE_DIR ""
#endif
#ifndef FLATATTN_DATA_INSTALL_DIR
#define FLATATTN_DATA_INSTALL_DIR ""
#endif

namespace flatattn::model {

namespace fs = std::filesystem;

namespace {

bool is_root(const fs::path& p) {
  std::error_code ec;
  return !p.empty() && fs::is_directory(p / "model" / "hardware", ec);
}

/// Directory of the binary (executable or shared library) that holds this code.
fs::path module_dir() {
  Dl_info info{};
  if (dladdr(reinterpret_cast<void*>(&module_dir), &info) == 0 || info.dli_fname == nullptr) return {};
  std::error_code ec;
  fs::path p = fs::canonical(fs::path(info.dli_fname), ec);
  return ec ? fs::path(info.dli_fname).parent_path() : p.parent_path();
}

std::vector<fs::path> candidates() {
  std::vector<fs::path> c;
  if (const fs::path m = module_dir(); !m.empty()) {
    c.push_back(m / ".." / "share" / "flatattn");
    c.push_back(m / ".." / ".." / "share" / "flatattn");
    c.push_back(m / "share" / "flatattn");  // the Python package: flatattn/_C*.so + flatattn/share/flatattn
  }
  c.emplace_back(FLATATTN_DATA_SOURCE_DIR);
  c.emplace_back(FLATATTN_DATA_INSTALL_DIR);
  return c;
}

std::string lower(std::string_view s) {
  std::string r(s);
  std::transform(r.begin(), r.end(), r.begin(), [](unsigned char ch) { return char(std::tolower(ch)); });
  return r;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace

fs::path data_root() {
  if (const char* env = std::getenv("FLATATTN_DATA_DIR"); env != nullptr && *env != '\0') {
    if (!is_root(env))
      throw Error(Error::Kind::invalid_argument, "FLATATTN_DATA_DIR", env,
                  "the directory must contain model/hardware/ (the data root: data/ of the source tree or "
                  "<prefix>/share/flatattn)",
                  "point it at the data root, or unset it to use the built-in search");
    return fs::path(env).lexically_normal();
  }
  std::string searched;
  for (const fs::path& p : candidates()) {
    if (is_root(p)) return fs::weakly_canonical(p);
    if (!p.empty()) searched += (searched.empty() ? "" : ", ") + p.lexically_normal().string();
  }
  throw Error(Error::Kind::runtime, "model data directory", "not found",
              "searched " + searched + " for model/hardware/",
              "set FLATATTN_DATA_DIR to the data root (data/ of the source tree or <prefix>/share/flatattn)");
}

std::vector<std::string> list_presets(std::string_view kind_dir) {
  std::vector<std::string> names;
  const fs::path dir = data_root() / "model" / kind_dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.is_regular_file() && e.path().extension() == ".json") names.push_back(e.path().stem().string());
  std::sort(names.begin(), names.end());
  return names;
}

fs::path resolve_data_file(std::string_view kind_dir, std::string_view name_or_path) {
  const std::string arg(name_or_path);
  std::error_code ec;
  const bool looks_like_path = arg.find('/') != std::string::npos ||
                               (arg.size() > 5 && arg.substr(arg.size() - 5) == ".json");
  if (fs::is_regular_file(arg, ec) || looks_like_path) {
    if (!fs::is_regular_file(arg, ec))
      throw Error(Error::Kind::invalid_argument, std::string(kind_dir) + " file", arg, "no such file",
                  "give an existing JSON file or one of the presets: " + join(list_presets(kind_dir)));
    return fs::path(arg);
  }
  const fs::path f = data_root() / "model" / kind_dir / (lower(arg) + ".json");
  if (!fs::is_regular_file(f, ec))
    throw Error(Error::Kind::invalid_argument, std::string(kind_dir) + " preset", arg,
                "no preset of that name in " + (data_root() / "model" / kind_dir).string(),
                "use one of: " + join(list_presets(kind_dir)) + ", or a path to your own JSON file");
  return f;
}

fs::path tool_path(std::string_view name) {
  const fs::path root = data_root();
  for (const fs::path& p : {root / "tools" / name, root / ".." / "tools" / name}) {
    std::error_code ec;
    if (fs::is_regular_file(p, ec)) return p.lexically_normal();
  }
  throw Error(Error::Kind::runtime, "helper script", std::string(name),
              "not found in " + (root / "tools").string() + " or " + (root / ".." / "tools").string(),
              "reinstall flatattn (the script is installed with the model data)");
}

}  // namespace flatattn::model
