#include "src/check/dropout_probe.h"

#include <cmath>

namespace flatattn::check {

CaseTensors dropout_probe_case(DType dtype, std::int64_t batch, std::int64_t heads, std::int64_t n, const Options& o) {
  Case c;
  c.dtype = dtype, c.batch = batch, c.nq = n, c.nk = n, c.hq = heads, c.hkv = heads, c.d = n;
  c.options = o;
  CaseTensors t = make_case(c, 1, true);
  for (std::int64_t x = 0; x < t.q.numel(); ++x) t.q.set(x, 0.0), t.k.set(x, 0.0);
  for (std::int64_t x = 0; x < t.v.numel(); ++x) {
    const std::int64_t d = x % n, r = (x / (n * heads)) % n;
    t.v.set(x, r == d ? 1.0 : 0.0);
    t.dout.set(x, r == d ? 1.0 : 0.0);
  }
  return t;
}

std::vector<std::uint8_t> read_dropout_mask(const HostTensor& x, std::int64_t batch, std::int64_t heads,
                                            std::int64_t n, float p, bool transposed, double rel_tol) {
  std::vector<std::uint8_t> m(static_cast<std::size_t>(batch * heads * n * n), 2);
  const double kept = 1.0 / ((1.0 - p) * n);
  for (std::int64_t b = 0; b < batch; ++b)
    for (std::int64_t r = 0; r < n; ++r)
      for (std::int64_t h = 0; h < heads; ++h)
        for (std::int64_t c = 0; c < n; ++c) {
          const double v = x.at(((b * n + r) * heads + h) * n + c);
          const std::int64_t i = transposed ? c : r, j = transposed ? r : c;
          m[static_cast<std::size_t>(((b * heads + h) * n + i) * n + j)] =
              v == 0.0 ? 0 : std::abs(v - kept) <= rel_tol * kept ? 1 : 3;
        }
  return m;
}

}  // namespace flatattn::check
