// The flatattn command: each subcommand lives in its own file and registers itself here.
#pragma once

namespace CLI {
class App;
}

namespace flatattn::cli {

/// Each register_* adds one subcommand (with its flags, --help text and callback) to `app`.
void register_run(CLI::App& app);    // cli/cmd_run.cc:   the main job (default workload)
void register_check(CLI::App& app);  // cli/cmd_check.cc: sweep against the oracle
void register_bench(CLI::App& app);  // cli/cmd_bench.cc: Flash vs FLAT vs naive over N
void register_model(CLI::App& app);  // cli/cmd_model.cc: the FLAT dataflow cost model (src/model)
void register_model_cp(CLI::App& model);  // cli/cmd_model_cp.cc: `model cp`, context parallelism
void register_model_decode(CLI::App& model);  // cli/cmd_model_decode.cc: `model decode`, the decode step

}  // namespace flatattn::cli
