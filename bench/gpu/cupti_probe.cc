// CUPTI runtime-API callbacks for host_overhead (see cupti_probe.h).
#include "bench/gpu/cupti_probe.h"

#ifdef FLATATTN_BENCH_CUPTI
#include <cupti.h>

#include <cstdio>
#endif

namespace flatattn::bench {

namespace {

thread_local ProbeReading reading;
thread_local Clock::time_point entered;
thread_local int depth = 0;  // a runtime call made from inside another one counts once

}  // namespace

#ifdef FLATATTN_BENCH_CUPTI
namespace {

CUpti_SubscriberHandle subscriber = nullptr;

bool is_launch(CUpti_CallbackId id) {
  return id == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_v7000 ||
         id == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernel_ptsz_v7000 ||
         id == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_v11060 ||
         id == CUPTI_RUNTIME_TRACE_CBID_cudaLaunchKernelExC_ptsz_v11060;
}

void CUPTIAPI on_runtime_api(void*, CUpti_CallbackDomain, CUpti_CallbackId id, const void* data) {
  const auto now = Clock::now();
  const auto* cb = static_cast<const CUpti_CallbackData*>(data);
  if (cb->callbackSite == CUPTI_API_ENTER) {
    if (depth++ == 0) entered = now;
    if (is_launch(id) && reading.launches++ == 0) reading.first_launch = now;
  } else if (--depth == 0) {
    reading.inside_us += std::chrono::duration<double, std::micro>(now - entered).count();
    ++reading.api_calls;
  }
}

}  // namespace

bool probe_start() {
  if (cuptiSubscribe(&subscriber, reinterpret_cast<CUpti_CallbackFunc>(on_runtime_api), nullptr) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "cupti_probe: cuptiSubscribe failed; no split of the host time\n");
    return false;
  }
  if (cuptiEnableDomain(1, subscriber, CUPTI_CB_DOMAIN_RUNTIME_API) != CUPTI_SUCCESS) {
    std::fprintf(stderr, "cupti_probe: cuptiEnableDomain failed; no split of the host time\n");
    cuptiUnsubscribe(subscriber);
    subscriber = nullptr;
    return false;
  }
  return true;
}

void probe_stop() {
  if (subscriber) cuptiUnsubscribe(subscriber);
  subscriber = nullptr;
}
#else
bool probe_start() { return false; }
void probe_stop() {}
#endif

void probe_reset() {
  reading = ProbeReading{};
  depth = 0;
}

ProbeReading probe_read() { return reading; }

}  // namespace flatattn::bench
