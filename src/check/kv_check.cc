#include "src/check/kv_check.h"

#include "src/reference/reference_kvcache.h"

namespace flatattn::check {

std::string KvVerdict::detail() const {
  return "out: " + out.detail() + " | lse: " + lse.detail() + (cache.empty() ? "" : " | cache: " + cache) +
         " | kernel " + kernel;
}

KvVerdict check_kvcache(const KvCase& c, std::mt19937_64& rng, const std::function<Report(KvCaseTensors&)>& run,
                        bool cuda) {
  const KvCaseTensors before = make_kv_case(c, rng);
  KvCaseTensors got = before, oracle = before, naive = before;
  oracle.out = HostTensor::make(DType::f64, before.out.shape);
  if (c.options.return_lse) oracle.lse = HostTensor::make(DType::f64, before.lse.shape);
  ref::forward_kvcache(oracle.args(), c.options, ref::Precision::f64);
  ref::forward_kvcache(naive.args(), c.options, ref::Precision::input);
  KvVerdict v;
  v.kernel = run(got).kernel;
  v.out = judge(got.out, oracle.out, &naive.out, c.dtype);
  if (c.options.return_lse) {
    v.lse = judge_lse(got.lse, oracle.lse, lse_tolerance(1.0, oracle.lse, cuda));
  } else {
    v.lse.pass = true;
  }
  v.cache = compare_caches(got, oracle, before);
  return v;
}

}  // namespace flatattn::check
