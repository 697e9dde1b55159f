// flatattn: umbrella header. Exact, IO-aware fused attention (Flash and FLAT dataflows).
#pragma once

#include "flatattn/attention.h"
#include "flatattn/context_parallel.h"
#include "flatattn/dtype.h"
#include "flatattn/error.h"
#include "flatattn/kvcache.h"
#include "flatattn/options.h"
#include "flatattn/tensor.h"
#include "flatattn/version.h"  // generated into the build tree
