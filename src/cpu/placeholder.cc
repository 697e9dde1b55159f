// TEMPORARY: replaced by the fused CPU engine before this lands.
#include "src/core/backend.h"
namespace flatattn::cpu {
Report forward(const Problem&, const FwdTensors&) { throw Error(Error::Kind::unsupported, "cpu", "", "engine not built yet", "wait"); }
Report backward(const Problem&, const BwdTensors&) { throw Error(Error::Kind::unsupported, "cpu", "", "engine not built yet", "wait"); }
}  // namespace flatattn::cpu
