// flatattn: the library's one exception type.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace flatattn {

/// Every failure the library reports is an flatattn::Error.
///
/// Invalid input names the argument, the value it had, the limit it broke and how to fix it;
/// what() joins the four into one line:
///   "flatattn: q: head dim D=300 exceeds the limit D <= 256 on CUDA; fix: split the head ..."
/// On an invalid-argument error nothing has been written to any output.
class Error : public std::runtime_error {
 public:
  enum class Kind { invalid_argument, unsupported, runtime };

  Error(Kind kind, std::string argument, std::string value, std::string limit, std::string fix);

  [[nodiscard]] Kind kind() const { return kind_; }
  [[nodiscard]] const std::string& argument() const { return argument_; }
  [[nodiscard]] const std::string& value() const { return value_; }
  [[nodiscard]] const std::string& limit() const { return limit_; }
  [[nodiscard]] const std::string& fix() const { return fix_; }

 private:
  Kind kind_;
  std::string argument_, value_, limit_, fix_;
};

/// "invalid_argument", "unsupported" or "runtime" (as the Python bindings and `flatattn` report it).
constexpr std::string_view name(Error::Kind k) {
  switch (k) {
    case Error::Kind::invalid_argument: return "invalid_argument";
    case Error::Kind::unsupported: return "unsupported";
    case Error::Kind::runtime: return "runtime";
  }
  return "runtime";
}

}  // namespace flatattn
