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
  // The sub-block's position in the whole sequence (Options::dropout_row0/col0, the rule of validate.cc).
  require(options.dropout_row0 >= 0 && options.dropout_row0 <= kMax - nq, "dropout_row0",
          std::to_string(options.dropout_row0), "must be in [0, 2^31 - nq] (nq = " + std::to_string(nq) + ")",
          "pass the global row of the first query row (0 for a whole sequence)");
  require(options.dropout_col0 >= 0 && options.dropout_col0 <= kMax - nk, "dropout_col0",
          std::to_string(options.dropout_col0), "must be in [0, 2^31 - nk] (nk = " + std::to_string(nk) + ")",
          "pass the global column of the first key (0 for a whole sequence)");
  require(options.dropout_col0 % kDropoutColAlign == 0, "dropout_col0", std::to_string(options.dropout_col0),
          "must be a multiple of " + std::to_string(kDropoutColAlign) +
              " (the dropout stream's Philox calls serve 64-key groups, src/core/philox.h)",
          "start the key block at a multiple of " + std::to_string(kDropoutColAlign) + " of the whole sequence");
  const std::int64_t n = batch * hq * nq * nk;
  require(mask != nullptr || n == 0, "mask", "null", "must point to B * Hq * Nq * Nk bytes", "pass the buffer");
  if (n == 0) return;
  const DropoutSlot slot = check_dropout_slot(options, batch, hq);
  const DropoutStream s = dropout_stream(options.dropout_seed, options.dropout_offset, p, slot.heads,
                                         options.dropout_row0, options.dropout_col0, slot.bh0);
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
