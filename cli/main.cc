// flatattn: the command-line front end. Exit codes: 0 success; 1 a check failed or the work failed at
// run time; 2 bad input (one line on stderr naming the flag and the allowed values).
#include <cstdio>
#include <exception>

#include <CLI/CLI.hpp>

#include "cli/commands.h"
#include "cli/flags.h"
#include "flatattn/error.h"
#include "flatattn/version.h"

int main(int argc, char** argv) {
  using namespace flatattn::cli;
  CLI::App app{"flatattn: exact, IO-aware fused attention (Flash and FLAT dataflows) on CPUs and NVIDIA GPUs.\n"
               "Run `flatattn <command> --help` for a command's flags.",
               "flatattn"};
  app.set_version_flag("--version", FLATATTN_VERSION);
  app.require_subcommand(1, 1);
  register_run(app);
  register_check(app);
  register_bench(app);
  register_model(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::Success& e) {  // --help, --version
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    if (app.get_subcommands().empty())
      std::fprintf(stderr, "flatattn: %s; allowed: run, check, bench, model (see flatattn --help)\n", e.what());
    else
      std::fprintf(stderr, "flatattn: %s\n", e.what());
    return 2;
  } catch (const UsageError& e) {
    std::fprintf(stderr, "flatattn: %s\n", e.what());
    return 2;
  } catch (const flatattn::Error& e) {
    // Bad input the library caught (or this build cannot serve): name the flag where there is one.
    if (e.kind() != flatattn::Error::Kind::runtime) {
      std::fprintf(stderr, "flatattn: %s\n", usage_line(e).c_str());
      return 2;
    }
    std::fprintf(stderr, "%s\n", e.what());
    return 1;
  } catch (const CommandFailed& f) {
    return f.code;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "flatattn: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
