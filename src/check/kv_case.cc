#include "src/check/kv_case.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <set>
#include <sstream>

namespace flatattn::check {

std::string KvCase::name() const {
  std::ostringstream s;
  s << flatattn::name(dtype) << " B" << batch << " Nq" << nq << " Nnew" << nnew << " Hq" << hq << " Hkv" << hkv
    << " D" << d << (paged ? " paged" + std::to_string(page_size) : std::string(" contiguous"));
  if (!seqlens.empty()) {
    s << " seqlens[";
    for (std::size_t i = 0; i < seqlens.size() && i < 8; ++i) s << (i ? "," : "") << seqlens[i];
    s << (seqlens.size() > 8 ? ",..]" : "]");
  } else {
    s << " ctx<=" << max_context;
  }
  if (!q_lens.empty()) {
    s << " varlen_q[";
    for (std::size_t i = 0; i < q_lens.size() && i < 8; ++i) s << (i ? "," : "") << q_lens[i];
    s << (q_lens.size() > 8 ? ",..]" : "]");
    if (max_seqlen_q >= 0) s << " max_seqlen_q" << max_seqlen_q;
  }
  if (paged && shuffle_pages) s << " shuffled";
  if (share_pages) s << " shared";
  if (leftpad) s << " leftpad";
  if (batch_idx) s << " batch_idx";
  if (rotary_dim) s << " rope" << rotary_dim << (rotary_interleaved ? "i" : "h");
  if (options.causal) s << " causal";
  if (options.window.left >= 0 || options.window.right >= 0)
    s << " window(" << options.window.left << "," << options.window.right << ")";
  if (options.softcap > 0) s << " softcap" << options.softcap;
  if (alibi) s << (alibi == 1 ? " alibi(Hq)" : " alibi(B,Hq)");
  if (sinks) s << " sinks";
  if (num_splits) s << " splits" << num_splits;
  if (options.return_lse) s << " lse";
  return s.str();
}

namespace {
std::int32_t* i32(HostTensor& t) { return static_cast<std::int32_t*>(t.data()); }
const std::int32_t* i32(const HostTensor& t) { return static_cast<const std::int32_t*>(t.data()); }
}  // namespace

std::int64_t KvCaseTensors::page_size() const { return k_cache.shape[1]; }

std::int64_t KvCaseTensors::physical_row(std::int64_t b, std::int64_t t) const {
  const std::int64_t ps = page_size();
  if (c.paged) return std::int64_t{i32(block_table)[b * block_table.shape[1] + t / ps]} * ps + t % ps;
  const std::int64_t row = c.batch_idx ? i32(cache_batch_idx)[b] : b;
  return row * ps + t;
}

KvCaseTensors make_kv_case(const KvCase& c0, std::mt19937_64& rng) {
  KvCaseTensors t;
  t.c = c0;
  KvCase& c = t.c;
  auto uni = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  if (c.seqlens.empty())
    for (std::int64_t b = 0; b < c.batch; ++b) c.seqlens.push_back(static_cast<std::int32_t>(uni(0, c.max_context)));
  std::int64_t longest = 0;
  for (auto s : c.seqlens) longest = std::max<std::int64_t>(longest, s + c.nnew);

  t.cache_seqlens = HostTensor::make(DType::i32, {c.batch});
  std::copy(c.seqlens.begin(), c.seqlens.end(), i32(t.cache_seqlens));
  std::vector<std::int32_t> lp(c.batch, 0);
  if (c.leftpad) {
    for (std::int64_t b = 0; b < c.batch; ++b) lp[b] = static_cast<std::int32_t>(uni(0, c.seqlens[b]));
    t.cache_leftpad = HostTensor::make(DType::i32, {c.batch});
    std::copy(lp.begin(), lp.end(), i32(t.cache_leftpad));
  }

  std::int64_t rows = 0, ps = 0;  // cache rows (pages) and tokens per row (page)
  if (c.paged) {
    ps = c.page_size;
    std::vector<std::int64_t> need(c.batch);
    std::int64_t max_pages = 1, total = 0;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      need[b] = std::max<std::int64_t>(1, (c.seqlens[b] + c.nnew + ps - 1) / ps);
      max_pages = std::max(max_pages, need[b]);
      total += need[b];
    }
    max_pages += 1;  // a spare column of -1 (past every sequence's last page: never read)
    rows = total + 3;  // spare pages, never referenced
    std::vector<std::int32_t> pool(rows);
    std::iota(pool.begin(), pool.end(), 0);
    if (c.shuffle_pages) std::shuffle(pool.begin(), pool.end(), rng);
    t.block_table = HostTensor::make(DType::i32, {c.batch, max_pages});
    std::fill(i32(t.block_table), i32(t.block_table) + c.batch * max_pages, -1);
    std::size_t next = 0;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      // Shared: the pages of sequence 0 that both sequences hold full and neither appends to.
      const std::int64_t shared = (c.share_pages && b > 0) ? std::min<std::int64_t>(c.seqlens[0], c.seqlens[b]) / ps : 0;
      for (std::int64_t p = 0; p < need[b]; ++p)
        i32(t.block_table)[b * max_pages + p] = p < shared ? i32(t.block_table)[p] : pool[next++];
    }
  } else {
    ps = longest + 3;
    rows = c.batch + (c.batch_idx ? 2 : 0);
    if (c.batch_idx) {
      std::vector<std::int32_t> perm(rows);
      std::iota(perm.begin(), perm.end(), 0);
      std::shuffle(perm.begin(), perm.end(), rng);
      t.cache_batch_idx = HostTensor::make(DType::i32, {c.batch});
      std::copy(perm.begin(), perm.begin() + c.batch, i32(t.cache_batch_idx));
    }
  }
  const std::uint64_t seed = rng();
  t.k_cache = HostTensor::make(c.dtype, {rows, ps, c.hkv, c.d});
  t.v_cache = HostTensor::make(c.dtype, {rows, ps, c.hkv, c.d});
  t.k_cache.poison();
  t.v_cache.poison();
  {  // the rows a sequence reads get N(0, 1) values
    HostTensor kr = HostTensor::make(c.dtype, {rows * ps, c.hkv * c.d}), vr = kr;
    kr.fill_normal(seed ^ 11);
    vr.fill_normal(seed ^ 12);
    const std::int64_t w = c.hkv * c.d;
    const std::size_t es = element_size(c.dtype);
    for (std::int64_t b = 0; b < c.batch; ++b)
      for (std::int64_t p = lp[b]; p < c.seqlens[b]; ++p) {
        const std::int64_t r = t.physical_row(b, p);
        std::memcpy(static_cast<char*>(t.k_cache.data()) + r * w * es, static_cast<const char*>(kr.data()) + r * w * es, w * es);
        std::memcpy(static_cast<char*>(t.v_cache.data()) + r * w * es, static_cast<const char*>(vr.data()) + r * w * es, w * es);
      }
  }
  std::int64_t total_q = 0;
  if (c.varlen()) {
    t.cu_seqlens_q = HostTensor::make(DType::i32, {c.batch + 1});
    i32(t.cu_seqlens_q)[0] = 0;
    for (std::int64_t b = 0; b < c.batch; ++b) {
      total_q += c.q_lens[static_cast<std::size_t>(b)];
      i32(t.cu_seqlens_q)[b + 1] = static_cast<std::int32_t>(total_q);
    }
    t.q = HostTensor::make(c.dtype, {total_q, c.hq, c.d});
  } else {
    t.q = HostTensor::make(c.dtype, {c.batch, c.nq, c.hq, c.d});
  }
  t.q.fill_normal(seed ^ 1);
  if (c.nnew > 0) {
    t.k_new = HostTensor::make(c.dtype, {c.batch, c.nnew, c.hkv, c.d});
    t.v_new = HostTensor::make(c.dtype, {c.batch, c.nnew, c.hkv, c.d});
    t.k_new.fill_normal(seed ^ 2);
    t.v_new.fill_normal(seed ^ 3);
  }
  if (c.rotary_dim > 0) {  // RoFormer's frequencies theta_c = 10000^(-2c / rotary_dim) at positions 0..
    const std::int64_t npos = (c.paged ? t.block_table.shape[1] * ps : ps) + c.nq;
    const std::int64_t half = c.rotary_dim / 2;
    t.rotary_cos = HostTensor::make(c.dtype, {npos, half});
    t.rotary_sin = HostTensor::make(c.dtype, {npos, half});
    for (std::int64_t p = 0; p < npos; ++p)
      for (std::int64_t i = 0; i < half; ++i) {
        const double a = double(p) * std::pow(10000.0, -2.0 * double(i) / double(c.rotary_dim));
        t.rotary_cos.set(p * half + i, std::cos(a));
        t.rotary_sin.set(p * half + i, std::sin(a));
      }
  }
  t.out = c.varlen() ? HostTensor::make(c.dtype, {total_q, c.hq, c.d}) : HostTensor::make(c.dtype, {c.batch, c.nq, c.hq, c.d});
  t.out.poison();
  if (c.options.return_lse) {
    t.lse = c.varlen() ? HostTensor::make(DType::f32, {c.hq, total_q}) : HostTensor::make(DType::f32, {c.batch, c.hq, c.nq});
    t.lse.poison();
  }
  if (c.alibi) {  // BLOOM's slopes (Press et al. 2022, Sec. 3) times a random factor in [0.5, 1.5)
    t.alibi = c.alibi == 1 ? HostTensor::make(DType::f32, {c.hq}) : HostTensor::make(DType::f32, {c.batch, c.hq});
    std::uniform_real_distribution<double> u(0.5, 1.5);
    for (std::int64_t e = 0; e < t.alibi.numel(); ++e)
      t.alibi.set(e, std::exp2(-8.0 * double(e % c.hq + 1) / double(c.hq)) * u(rng));
  }
  if (c.sinks) {
    t.sinks = HostTensor::make(DType::f32, {c.hq});
    t.sinks.fill_normal(seed ^ 6);
  }
  return t;
}

KvCacheArgs KvCaseTensors::args(Device device) const {
  KvCacheArgs a;
  a.q = q.view(device);
  a.cache.k_cache = k_cache.view(device);
  a.cache.v_cache = v_cache.view(device);
  a.cache.cache_seqlens = cache_seqlens.view(device);
  if (c.paged) a.cache.block_table = block_table.view(device);
  if (c.batch_idx && !c.paged) a.cache.cache_batch_idx = cache_batch_idx.view(device);
  if (c.leftpad) a.cache.cache_leftpad = cache_leftpad.view(device);
  if (c.nnew > 0) {
    a.k_new = k_new.view(device);
    a.v_new = v_new.view(device);
  }
  if (c.rotary_dim > 0) {
    a.rotary_cos = rotary_cos.view(device);
    a.rotary_sin = rotary_sin.view(device);
    a.rotary_interleaved = c.rotary_interleaved;
  }
  a.out = out.view(device);
  if (c.options.return_lse) a.lse = lse.view(device);
  if (c.alibi) a.alibi_slopes = alibi.view(device);
  if (c.sinks) a.sinks = sinks.view(device);
  a.num_splits = c.num_splits;
  if (c.varlen()) {
    a.cu_seqlens_q = cu_seqlens_q.view(device);
    std::int64_t longest = 0;
    for (auto n : c.q_lens) longest = std::max<std::int64_t>(longest, n);
    a.max_seqlen_q = c.max_seqlen_q >= 0 ? c.max_seqlen_q : longest;
  }
  return a;
}

std::string compare_caches(const KvCaseTensors& got, const KvCaseTensors& ref, const KvCaseTensors& before,
                           double ulps) {
  const KvCase& c = got.c;
  std::set<std::int64_t> appended;
  for (std::int64_t b = 0; b < c.batch; ++b)
    for (std::int64_t t = 0; t < c.nnew; ++t) appended.insert(got.physical_row(b, c.seqlens[b] + t));
  const std::int64_t w = c.hkv * c.d, nrows = got.k_cache.numel() / w;
  const double eps = c.dtype == DType::f32 ? 0x1p-23 : c.dtype == DType::f16 ? 0x1p-10 : 0x1p-7;
  for (int which = 0; which < 2; ++which) {
    const HostTensor& g = which ? got.v_cache : got.k_cache;
    const HostTensor& r = which ? ref.v_cache : ref.k_cache;
    const HostTensor& b0 = which ? before.v_cache : before.k_cache;
    const char* nm = which ? "v_cache" : "k_cache";
    const std::size_t es = element_size(c.dtype);
    for (std::int64_t row = 0; row < nrows; ++row) {
      if (!appended.count(row)) {
        if (std::memcmp(static_cast<const char*>(g.data()) + row * w * es, static_cast<const char*>(b0.data()) + row * w * es, w * es) != 0)
          return std::string(nm) + ": row " + std::to_string(row) + " changed but is not an appended row";
        continue;
      }
      for (std::int64_t h = 0; h < c.hkv; ++h) {
        double scale = 0;  // the largest magnitude of the head's row: the rotation mixes its channels
        for (std::int64_t e = 0; e < c.d; ++e) scale = std::max(scale, std::abs(r.at(row * w + h * c.d + e)));
        for (std::int64_t e = 0; e < c.d; ++e) {
          const double x = g.at(row * w + h * c.d + e), y = r.at(row * w + h * c.d + e);
          if (!(std::abs(x - y) <= ulps * eps * std::max(std::abs(y), 0.25 * scale)))
            return std::string(nm) + ": appended row " + std::to_string(row) + " head " + std::to_string(h) +
                   " channel " + std::to_string(e) + ": " + std::to_string(x) + " vs the oracle's " + std::to_string(y);
        }
      }
    }
  }
  return {};
}

}  // namespace flatattn::check
