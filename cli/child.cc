#include "cli/child.h"

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cli/flags.h"
#include "flatattn/error.h"

namespace flatattn::cli {

namespace {

using nlohmann::json;

const char* kind_name(Error::Kind k) {
  switch (k) {
    case Error::Kind::invalid_argument: return "invalid_argument";
    case Error::Kind::unsupported: return "unsupported";
    case Error::Kind::runtime: return "runtime";
  }
  return "runtime";
}

void write_all(int fd, const std::string& s) {
  std::size_t off = 0;
  while (off < s.size()) {
    const ssize_t w = ::write(fd, s.data() + off, s.size() - off);
    if (w < 0) {
      if (errno == EINTR) continue;
      return;
    }
    off += static_cast<std::size_t>(w);
  }
}

}  // namespace

json run_in_child(const std::function<json()>& fn) {
  int fds[2];
  if (::pipe(fds) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::fflush(stdout);
  std::fflush(stderr);
  const pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::close(fds[0]);
    json r;
    try {
      r = fn();
    } catch (const Error& e) {
      r = json{{"error",
                {{"kind", kind_name(e.kind())}, {"argument", e.argument()}, {"value", e.value()}, {"limit", e.limit()},
                 {"fix", e.fix()}, {"message", e.what()}}}};
    } catch (const UsageError& e) {
      r = json{{"error", {{"kind", "usage"}, {"message", e.what()}}}};
    } catch (const std::exception& e) {
      r = json{{"error", {{"kind", "runtime"}, {"message", e.what()}}}};
    }
    rusage ru{};
    ::getrusage(RUSAGE_SELF, &ru);
    r["maxrss_bytes"] = static_cast<double>(ru.ru_maxrss) * 1024.0;  // Linux: KiB
    write_all(fds[1], r.dump());
    ::close(fds[1]);
    ::_exit(0);  // no atexit handlers, no OpenMP/CUDA teardown in the child
  }
  ::close(fds[1]);
  std::string text;
  char buf[65536];
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    std::string msg = "killed by signal " + std::to_string(sig) + " (" + strsignal(sig) + ")";
    if (sig == SIGKILL) msg += ": most likely out of memory";
    return json{{"error", {{"kind", "killed"}, {"message", msg}}}};
  }
  if (text.empty()) return json{{"error", {{"kind", "runtime"}, {"message", "measurement process returned nothing"}}}};
  return json::parse(text);
}

void rethrow_child_error(const json& r) {
  if (!r.contains("error")) return;
  const json& e = r["error"];
  const std::string kind = e.value("kind", "runtime");
  if (kind == "invalid_argument" || kind == "unsupported" || (kind == "runtime" && e.contains("argument"))) {
    const Error::Kind k = kind == "invalid_argument" ? Error::Kind::invalid_argument
                          : kind == "unsupported"    ? Error::Kind::unsupported
                                                     : Error::Kind::runtime;
    throw Error(k, e.value("argument", ""), e.value("value", ""), e.value("limit", ""), e.value("fix", ""));
  }
  if (kind == "usage") throw UsageError(e.value("message", std::string()));
  throw std::runtime_error(e.value("message", "measurement failed"));
}

std::string child_error_line(const json& r) {
  if (!r.contains("error")) return "";
  const json& e = r["error"];
  return e.value("kind", "error") + ": " + e.value("message", "");
}

}  // namespace flatattn::cli
