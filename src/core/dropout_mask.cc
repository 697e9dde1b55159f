// flatattn::dropout_mask: validates the request and writes the keep mask of src/core/philox.h on the CPU or
// hands it to the CUDA backend.
#include <omp.h>

#include <string>

#include "flatattn/attention.h"
#include "src/core/backend.h"
#include "src/core/philox.h"
#include "src/core/validate.h"

namespace flatattn {

void dropout_mask(std::uint8_t* mask, Device device, std::int64_t batch, std::int64_t hq, std::int64_t nq,
                  std::int64_t nk, const Options& options, Stream stream) {
  const float p = options.dropout_p;
  require(std::isfinite(p) && p >= 0.f && p < 1.f, "dropout_p", std::to_string(p),
          "must be in [0, 1) (0 disables dropout)", "pass a probability such as 0.1, or 0");
  constexpr std::int64_t kMax = std::int64_t{1} << 31;
  for (auto [v, n] : {std::pair{batch, "batch"}, std::pair{hq, "hq"}, std::pair{nq, "nq"}, std::pair{nk, "nk"}})
    require(v >= 0 && v < kMax, n, std::to_string(v), "must be in [0, 2^31)", "pass the call's size");
  require(batch * hq < kMax, "hq", std::to_string(hq) + " with batch " + std::to_string(batch),
          "B * Hq must be < 2^31 (the counter's third word)", "split the batch");
  const std::int64_t n = batch * hq * nq * nk;
  require(mask != nullptr || n == 0, "mask", "null", "must point to B * Hq * Nq * Nk bytes", "pass the buffer");
  if (n == 0) return;
  const DropoutStream s = dropout_stream(options.dropout_seed, options.dropout_offset, p, hq);
  if (device.kind == DeviceKind::cuda) {
    cuda::dropout_mask(mask, device.index, batch, hq, nq, nk, s, stream);
    return;
  }
  const std::int64_t rows = batch * hq * nq;
#pragma omp parallel for schedule(static)
  for (std::int64_t r = 0; r < rows; ++r) {
    const auto i = static_cast<int>(r % nq), bh = static_cast<int>(r / nq);
    const int b = bh / static_cast<int>(hq), h = bh % static_cast<int>(hq);
    std::uint8_t* out = mask + r * nk;
    for (std::int64_t j = 0; j < nk; ++j) out[j] = dropout_keep(s, b, h, i, static_cast<int>(j)) ? 1 : 0;
  }
}

}  // namespace flatattn
