// Where the model's data files live, in the build tree and once installed.
//
// The data root is the directory that holds model/hardware/, model/workloads/ and model/kernels/:
// data/ in the source tree, <prefix>/share/flatattn once installed. It is the first of:
//   1. $FLATATTN_DATA_DIR, when set (an error if it has no model/ folder);
//   2. <dir of the running binary or libflatattn>/../share/flatattn (and ../../share/flatattn, for
//      multiarch lib dirs), or <that dir>/share/flatattn (the Python package): a relocated install
//      finds its own data;
//   3. the source tree's data/ (compiled in: the build tree runs without installing);
//   4. <CMAKE_INSTALL_FULL_DATADIR>/flatattn (compiled in).
#pragma once

#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace flatattn::model {

/// The data root (see above). Throws flatattn::Error listing the places searched when none exists.
std::filesystem::path data_root();

/// The file of a preset or a user path: when `name_or_path` names an existing file, or contains '/'
/// or ends in ".json", it is a path; otherwise <data root>/model/<kind_dir>/<name>.json (names are
/// case-insensitive). Throws Error naming the preset and listing the available ones when it is missing.
std::filesystem::path resolve_data_file(std::string_view kind_dir, std::string_view name_or_path);

/// Preset names (file stems) in <data root>/model/<kind_dir>/, sorted.
std::vector<std::string> list_presets(std::string_view kind_dir);

/// A helper script shipped with the library (tools/<name> in the source tree, <data root>/tools/<name>
/// installed). Throws Error when it cannot be found.
std::filesystem::path tool_path(std::string_view name);

}  // namespace flatattn::model
