#include "flatattn/error.h"

#include <utility>

namespace flatattn {

namespace {
std::string compose(const std::string& argument, const std::string& value, const std::string& limit,
                    const std::string& fix) {
  std::string m = "flatattn: " + argument;
  if (!value.empty()) m += " = " + value;
  if (!limit.empty()) m += ": " + limit;
  if (!fix.empty()) m += "; fix: " + fix;
  return m;
}
}  // namespace

Error::Error(Kind kind, std::string argument, std::string value, std::string limit, std::string fix)
    : std::runtime_error(compose(argument, value, limit, fix)),
      kind_(kind),
      argument_(std::move(argument)),
      value_(std::move(value)),
      limit_(std::move(limit)),
      fix_(std::move(fix)) {}

}  // namespace flatattn
