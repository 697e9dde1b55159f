// The ring test driver (ring_driver.h).
#include "tests/cp/ring_driver.h"

#include <thread>

#include "src/cp/ring_plan.h"

namespace flatattn::testing {

using check::HostTensor;

namespace {

// Calls f(global row, local row) for the rows `rank` holds.
template <class F>
void rows_of(SeqLayout layout, int rank, int world, std::int64_t n_local, F f) {
  for (const cp::Segment& s : cp::segments(layout, rank, world, n_local))
    for (std::int64_t i = 0; i < s.length; ++i) f(s.global + i, s.local + i);
}

// Copies between a whole tensor and a shard along `axis` (1: (B, N, H, D); 2: (B, H, N)).
void move_rows(HostTensor& full, HostTensor& part, SeqLayout layout, int rank, int world, int axis, bool to_part) {
  const std::int64_t n_local = part.shape[axis];
  std::int64_t outer = 1, inner = 1;
  for (int i = 0; i < axis; ++i) outer *= full.shape[i];
  for (std::size_t i = axis + 1; i < full.shape.size(); ++i) inner *= full.shape[i];
  const std::int64_t nf = full.shape[axis];
  rows_of(layout, rank, world, n_local, [&](std::int64_t g, std::int64_t l) {
    for (std::int64_t o = 0; o < outer; ++o)
      for (std::int64_t e = 0; e < inner; ++e) {
        const std::int64_t fi = (o * nf + g) * inner + e, pi = (o * n_local + l) * inner + e;
        if (to_part) {
          part.set(pi, full.at(fi));
        } else {
          full.set(fi, part.at(pi));
        }
      }
  });
}

HostTensor shard_axis(const HostTensor& full, SeqLayout layout, int rank, int world, int axis) {
  std::vector<std::int64_t> shape = full.shape;
  shape[axis] /= world;
  HostTensor part = HostTensor::make(full.dtype, shape);
  move_rows(const_cast<HostTensor&>(full), part, layout, rank, world, axis, true);
  return part;
}

// A view with a leading dim of 1 (a varlen case's (total, H, D) and (H, total) as (1, N, H, D) and (1, H, N)).
TensorView lead1(TensorView v) {
  for (int i = v.rank; i > 0; --i) {
    v.shape[i] = v.shape[i - 1];
    v.stride[i] = v.stride[i - 1];
  }
  v.shape[0] = 1;
  v.stride[0] = v.shape[1] * v.stride[1];
  ++v.rank;
  return v;
}

class CpuMemory final : public RingMemory {
 public:
  TensorView put(HostTensor& h) override { return h.view(); }
  void get(HostTensor&) override {}
};

}  // namespace

HostTensor shard_rows(const HostTensor& full, SeqLayout layout, int rank, int world) {
  return shard_axis(full, layout, rank, world, 1);
}
void unshard_rows(HostTensor& full, const HostTensor& part, SeqLayout layout, int rank, int world) {
  move_rows(full, const_cast<HostTensor&>(part), layout, rank, world, 1, false);
}
HostTensor shard_lse(const HostTensor& full, SeqLayout layout, int rank, int world) {
  return shard_axis(full, layout, rank, world, 2);
}
void unshard_lse(HostTensor& full, const HostTensor& part, SeqLayout layout, int rank, int world) {
  move_rows(full, const_cast<HostTensor&>(part), layout, rank, world, 2, false);
}

std::unique_ptr<RingMemory> cpu_memory(int) { return std::make_unique<CpuMemory>(); }

RingRun run_ring(check::CaseTensors& t, int world, SeqLayout layout, const Options& options, bool backward,
                 const std::function<std::unique_ptr<RingMemory>(int)>& memory, Device device,
                 const std::function<std::unique_ptr<RingTransport>(int)>& transport) {
  struct Rank {
    HostTensor q, k, v, out, lse, dout, dq, dk, dv;
  };
  // A varlen case is one packed sequence of documents: (total, H, D) rows on axis 0, its LSE (Hq, total).
  const int ax = t.c.varlen ? 0 : 1, lax = t.c.varlen ? 1 : 2;
  auto rows = [&](const HostTensor& h, int r) { return shard_axis(h, layout, r, world, ax); };
  auto wrap = [&](TensorView v) { return t.c.varlen ? lead1(v) : v; };
  const TensorView cu = t.c.varlen ? t.cu_q.view() : TensorView{};
  std::vector<Rank> ranks(world);
  for (int r = 0; r < world; ++r) {
    Rank& x = ranks[r];
    x.q = rows(t.q, r);
    x.k = rows(t.k, r);
    x.v = rows(t.v, r);
    x.out = HostTensor::poisoned_like(x.q, t.c.dtype);
    x.lse = shard_axis(t.lse, layout, r, world, lax);
    x.lse.poison();
    if (backward) {
      x.dout = rows(t.dout, r);
      x.dq = HostTensor::poisoned_like(x.q, t.c.dtype);
      x.dk = HostTensor::poisoned_like(x.k, t.c.dtype);
      x.dv = HostTensor::poisoned_like(x.v, t.c.dtype);
    }
  }
  LocalRing ring(world, device);
  RingRun run;
  run.errors.assign(world, "");
  std::vector<std::thread> threads;
  for (int r = 0; r < world; ++r)
    threads.emplace_back([&, r] {
      Rank& x = ranks[r];
      try {
        auto mem = memory(r);
        auto tr = transport ? transport(r) : ring.member(r);
        RingForwardArgs f{wrap(mem->put(x.q)), wrap(mem->put(x.k)), wrap(mem->put(x.v)), wrap(mem->put(x.out)),
                          wrap(mem->put(x.lse)), cu};
        Report rep = ring_forward(f, *tr, layout, options, mem->stream());
        if (r == 0) run.report = rep;
        if (backward) {
          RingBackwardArgs b{wrap(mem->put(x.dout)), f.q, f.k, f.v, f.out, f.lse, wrap(mem->put(x.dq)),
                             wrap(mem->put(x.dk)), wrap(mem->put(x.dv)), cu};
          Options bo = options;
          bo.return_lse = false;
          ring_backward(b, *tr, layout, bo, mem->stream());
          mem->get(x.dq);
          mem->get(x.dk);
          mem->get(x.dv);
        }
        mem->get(x.out);
        mem->get(x.lse);
      } catch (const Error& e) {
        run.errors[r] = e.argument() + ": " + e.what();
      } catch (const std::exception& e) {
        run.errors[r] = std::string("?: ") + e.what();
      }
    });
  for (auto& th : threads) th.join();
  for (int r = 0; r < world; ++r) {
    move_rows(t.out, ranks[r].out, layout, r, world, ax, false);
    move_rows(t.lse, ranks[r].lse, layout, r, world, lax, false);
    if (backward) {
      move_rows(t.dq, ranks[r].dq, layout, r, world, ax, false);
      move_rows(t.dk, ranks[r].dk, layout, r, world, ax, false);
      move_rows(t.dv, ranks[r].dv, layout, r, world, ax, false);
    }
  }
  return run;
}

}  // namespace flatattn::testing
