// The CUDA backend's entry points, orchestration only: the CUDA argument checks (check_args.h), the
// staging of views the kernels cannot address (staging.h: D not a multiple of 8, unaligned rows), the
// device's family (family.h), the instance for the request (registry.h; Flash or FLAT by
// policy/heuristics.h for Dataflow::automatic), the backward's workspace, the launch, and the Report.
// The success path builds no string: checks format their messages only when they fail, and the
// Report's kernel name is stored in the registry (see bench/gpu/host_overhead.cc for the cost per call).
#include "src/cuda/dispatch.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>

#include "src/core/backend.h"
#include "src/cuda/check_args.h"
#include "src/cuda/dbias.h"
#include "src/cuda/family.h"
#include "src/cuda/launch_api.h"
#include "src/cuda/meta_check.h"
#include "src/cuda/policy/heuristics.h"
#include "src/cuda/registry.h"
#include "src/cuda/runtime.h"
#include "src/cuda/sparse_derive.h"
#include "src/cuda/sparse_host.h"
#include "src/cuda/staging.h"
#include "src/cuda/ws_route.h"

namespace flatattn::cuda {

namespace {

/// The forward instance for p (its dataflow asked for, or chosen for Dataflow::automatic) on the device's
/// base family; a Flash instance then moves to the sm90 family where that is enabled and has the same
/// kernel head dim (so padding never grows); at a head dim where that family has only the warp-specialized
/// kernel (D = 256, policy/ws_tile.h), only for a call that kernel runs (ws_route.h). FLAT stays on the base
/// family. p's device must be current.
const FwdInstance* forward_instance(const Problem& p, const FwdTensors& t) {
  const DeviceInfo& dev = device_info(p.device.index);
  const Family fam = family_for(dev, p.dtype);
  const VariantId variant = variant_of(p.variant);
  const FwdInstance* flash = find_fwd(fam, Dataflow::flash, p.dtype, variant, p.d);
  const FwdInstance* flat = find_fwd(fam, Dataflow::flat, p.dtype, variant, p.d);
  const FwdInstance* inst = nullptr;
  switch (p.dataflow) {
    case Dataflow::flash:
      if (flash == nullptr) not_built("flash", fam, p.dtype, variant, p.d);
      inst = flash;
      break;
    case Dataflow::flat:
      if (flat == nullptr) not_built("flat", fam, p.dtype, variant, p.d);
      // A shape this dataflow does not serve (not a malformed argument): Kind::unsupported, as for an
      // instance that is not built, so callers can tell "pick another dataflow" from "fix the input".
      if (!flat_fits(fam, flat->d, p.nk))
        throw Error(Error::Kind::unsupported, "options.dataflow", "flat with Nk = " + std::to_string(p.nk),
                    "the FLAT kernel holds whole key rows of Nk <= " + std::to_string(flat_tile(fam, flat->d).cap_n()) +
                        " (D = " + std::to_string(flat->d) + ", " + name(fam) + " family)",
                    "use Dataflow::flash (or automatic) for longer rows");
      inst = flat;
      break;
    case Dataflow::automatic: {
      if (flash == nullptr && flat == nullptr) not_built("flash", fam, p.dtype, variant, p.d);
      const Workload w{p.batch, p.hq, p.hkv, p.nq, p.nk, flash != nullptr ? flash->d : flat->d, p.dtype, p.mask};
      // An empty call (B = 0, Nq = 0 or Nk = 0) launches nothing: no plan to ask for (the planner refuses
      // empty shapes), the report names the flash kernel.
      const bool empty = p.batch == 0 || p.nq == 0 || p.nk == 0;
      const bool want_flat = flat != nullptr && flat_fits(fam, flat->d, p.nk) && !p.sparse.on &&
                             (flash == nullptr || (!empty && choose_dataflow(dev, fam, w) == Dataflow::flat));
      if (!want_flat && flash == nullptr) not_built("flash", fam, p.dtype, variant, p.d);
      inst = want_flat ? flat : flash;
      break;
    }
  }
  if (inst == flash && sm90_enabled(dev)) {
    const FwdInstance* h = find_fwd(Family::sm90, Dataflow::flash, flash->dtype, flash->variant, flash->d);
    const FlashTileSize t90 = flash_tile(Family::sm90, static_cast<int>(flash->d));
    const bool sm90_flash = t90.block_m > 0;
    // Block-sparse (issue 16): the warp-specialized kernel where ws_schedule_for picks it (lists of whole tiles of
    // it), else the sm90 wgmma Flash kernel when the lists' blocks are whole tiles of it (check_sparse_tile), else
    // the sm80-style kernel (which may take smaller blocks, or refuses them).
    const bool sparse_fits =
        sm90_flash && p.sparse.block_q % t90.block_m == 0 && p.sparse.block_kv % t90.block_n == 0;
    if (h != nullptr && h->d == flash->d &&
        (p.sparse.on ? ws_schedule_for(static_cast<int>(h->d), p, t, variant) != 0 || sparse_fits
                     : sm90_flash || ws_schedule_for(static_cast<int>(h->d), p, t, variant) != 0))
      inst = h;
  }
  return inst;
}

/// The backward instance for p: the base family's, or the sm90 family's (wgmma, sm90/bwd_kernel.cuh)
/// when that is enabled and has the same kernel head dim (block-sparse: and its tile divides the blocks).
/// p's device must be current.
const BwdInstance* backward_instance(const Problem& p) {
  const DeviceInfo& dev = device_info(p.device.index);
  const Family fam = family_for(dev, p.dtype);
  const VariantId variant = variant_of(p.variant);
  const BwdInstance* base = find_bwd(fam, p.dtype, variant, p.d);
  if (base == nullptr) not_built("backward", fam, p.dtype, variant, p.d);
  if (!sm90_enabled(dev)) return base;
  const BwdInstance* h = find_bwd(Family::sm90, base->dtype, base->variant, base->d);
  if (h == nullptr || h->d != base->d) return base;
  // Block-sparse (issue 16): the sm90 kernel when the lists' blocks are whole tiles of it (check_sparse_tile),
  // else the sm80-style kernel (which may take smaller blocks, or refuses them).
  const BwdTileSize t90 = bwd_tile(Family::sm90, static_cast<int>(h->d));
  if (p.sparse.on && (p.sparse.block_q % t90.block_m != 0 || p.sparse.block_kv % t90.block_n != 0)) return base;
  return h;
}

/// The Report of a call that runs the instance `name` of head dim kernel_d for the caller's head dim d:
/// its stored name, with the zero-padding note when d is smaller (also stored: padded_name). Block sizes
/// are the caller's.
Report report_for(Dataflow df, const char* name, int kernel_d, std::int64_t d) {
  Report r;
  r.backend = "cuda";
  r.dataflow = df;
  if (kernel_d == d) {
    r.kernel = name;
  } else {
    r.kernel = padded_name(name, d);
  }
  return r;
}

/// forward() on views the kernels address directly (check_args.h); user_d: the caller's head dim (the
/// Report's), p.d when nothing was staged. p's device must be current.
Report forward_direct(const Problem& p, const FwdTensors& t, Stream stream, std::int64_t user_d, unsigned* meta_err) {
  const FwdInstance* inst = forward_instance(p, t);
  Report r = report_for(inst->dataflow, inst->name, inst->d, user_d);
  if (p.batch == 0 || p.nq == 0) return r;  // nothing to write
  LaunchArgs a;
  a.problem = &p;
  a.tensors = &t;
  a.stream = stream.handle;
  a.device = p.device.index;
  a.meta_err = meta_err;
  const LaunchInfo li = inst->launch(a);
  if (li.kernel != nullptr) r.kernel = inst->d == user_d ? std::string(li.kernel) : padded_name(li.kernel, user_d);
  r.block_m = li.block_m;
  r.block_n = inst->dataflow == Dataflow::flat ? static_cast<int>(p.nk) : li.block_n;
  return r;
}

/// backward() on views the kernels address directly; as forward_direct.
Report backward_direct(const Problem& p, const BwdTensors& t, Stream stream, std::int64_t user_d, unsigned* meta_err) {
  const BwdInstance* inst = backward_instance(p);
  const BwdTileSize tile = bwd_tile(inst->family, inst->d);
  // Block-sparse: lists of whole backward tiles (also checked at launch), before dbias or anything is written.
  if (p.sparse.on) check_sparse_tile(p.sparse, tile.block_m, tile.block_n);
  Report r = report_for(Dataflow::flash, p.deterministic ? inst->name_det : inst->name, inst->d, user_d);
  r.block_m = tile.block_m;
  r.block_n = tile.block_n;
  if (p.batch == 0 || (p.nq == 0 && p.nk == 0)) {  // nothing to write (a broadcast dbias of B = 0 is all 0)
    if (t.dbias.data != nullptr) dbias_zero(t.dbias, stream.handle);
    return r;
  }

  // dbias (common/dbias.cuh): a bias of full (B, Hq, Nq) gets plain stores (varlen: zeroed first unless every
  // element is visible; otherwise the kernels also store the zeros of the blocks they skip); a broadcast one is
  // summed in an fp32 workspace -- with atomics in the bias's shape (4 x its elements bytes), or in deterministic
  // mode stored per (b, h) in (B, Hq, Nq, Nk) (4 B Hq Nq Nk bytes) and summed in a fixed order -- then converted
  // into dbias (dbias_finish).
  BwdTensors tb = t;
  std::optional<StreamBuffer> dws;
  std::int64_t wb = 0, wh = 0, wq = 0;
  const BiasGrad& g = t.dbias;
  if (g.data != nullptr && p.variant.bias != nullptr) {
    const bool full = g.nb == p.batch && g.nh == p.hq && g.nq == p.nq;
    const bool all_visible = !p.varlen && p.mask.left < 0 && p.mask.right < 0 && !p.sparse.on;
    if (full) {
      // Outside varlen every row and key is some CTA's: the kernels write the zeros of the blocks they skip.
      if (!all_visible && p.varlen) dbias_zero(g, stream.handle);
      tb.dbias.kernel_zeros = !all_visible && !p.varlen;
    } else {
      const bool det = p.deterministic;
      wb = det ? p.batch : g.nb, wh = det ? p.hq : g.nh, wq = det ? p.nq : g.nq;
      const std::size_t bytes = static_cast<std::size_t>(wb * wh * wq * p.nk) * sizeof(float);
      dws.emplace(bytes, static_cast<cudaStream_t>(stream.handle), "dbias workspace",
                  "cudaMallocAsync on the call's stream must succeed (fp32: 4 x the bias's elements, deterministic: 4 * B * Hq * Nq * Nk bytes)",
                  "free GPU memory, pass no dbias, or run without deterministic");
      if (!det || (!all_visible && p.varlen))
        check(cudaMemsetAsync(dws->data(), 0, bytes, static_cast<cudaStream_t>(stream.handle)), "cudaMemsetAsync(dbias workspace)");
      BiasGrad w;
      w.data = dws->data();
      w.dtype = DType::f32;
      w.nb = wb, w.nh = wh, w.nq = wq, w.nk = p.nk;
      w.sb = wb == 1 ? 0 : wh * wq * p.nk, w.sh = wh == 1 ? 0 : wq * p.nk, w.si = wq == 1 ? 0 : p.nk;
      w.accumulate = !det;
      w.kernel_zeros = det && !all_visible && !p.varlen;  // the deterministic workspace: plain stores, as a full bias
      tb.dbias = w;
    }
  }

  // Workspace (BwdWorkspace): the dQ accumulator (Hq, B, Nq, D) -- fp32, or 64-bit fixed point when
  // deterministic -- and D_i (Hq, B, Nq).
  const std::size_t rows = static_cast<std::size_t>(p.hq) * static_cast<std::size_t>(p.batch) *
                           static_cast<std::size_t>(p.nq);
  StreamBuffer ws(BwdWorkspace::bytes(rows, inst->d, p.deterministic), static_cast<cudaStream_t>(stream.handle),
                  "backward workspace",
                  "cudaMallocAsync on the call's stream must succeed (dQ accumulator: 4 * Hq * B * Nq * D bytes, 8 * Hq * B * Nq * D when deterministic)",
                  "free GPU memory, or split the batch into several calls");
  BwdLaunchArgs a;
  a.problem = &p;
  a.tensors = &tb;
  a.stream = stream.handle;
  a.device = p.device.index;
  a.ws = BwdWorkspace::carve(ws.data(), rows, inst->d, p.deterministic);
  a.meta_err = meta_err;
  inst->launch(a);
  if (dws) dbias_finish(reinterpret_cast<const float*>(dws->data()), wb, wh, wq, g, stream.handle);
  return r;
}

// Both entry points: a violation an earlier varlen call left pending is raised first (MetaCheck's
// constructor); lists the library derives are built on the device next (DerivedLists, stream-ordered);
// this call's varlen metadata is checked by its kernels and reported by meta.finish(),
// after the staged outputs were copied back (meta_check.h). `direct` runs the kernels on (problem,
// tensors); views the kernels cannot address go through a Staging copy first (staging.h).
template <class Tensors, class Direct>
Report serve(const Problem& p0, const Tensors& t, Stream stream, Direct direct) {
  const bool addressable = check_cuda_args(p0, t);
  DeviceGuard guard(p0.device.index);
  MetaCheck meta(p0, static_cast<cudaStream_t>(stream.handle));
  // Block-sparse lists the library derives (local + global alone; the backward's q lists when absent): built on
  // the device on the call's stream before the kernels run, in a buffer that lives for the call (sparse_derive.h).
  std::optional<DerivedLists> derived;
  if (p0.sparse.derive_kv || p0.sparse.derive_q) derived.emplace(p0, static_cast<cudaStream_t>(stream.handle));
  const Problem& p = derived ? derived->problem() : p0;
  if (addressable) {
    Report r = direct(p, t, stream, p.d, meta.word());
    meta.finish();
    return r;
  }
  Staging staged(p, t, stream.handle);
  Report r;
  if constexpr (std::is_same_v<Tensors, FwdTensors>) {
    r = direct(staged.problem(), staged.forward_tensors(), stream, p.d, meta.word());
  } else {
    r = direct(staged.problem(), staged.backward_tensors(), stream, p.d, meta.word());
  }
  staged.finish();
  meta.finish();
  return r;
}

}  // namespace

bool built() { return true; }

Report forward(const Problem& p, const FwdTensors& t, Stream stream) { return serve(p, t, stream, forward_direct); }

Report backward(const Problem& p, const BwdTensors& t, Stream stream) { return serve(p, t, stream, backward_direct); }

void dropout_mask(std::uint8_t* mask, int device, std::int64_t batch, std::int64_t hq, std::int64_t nq,
                  std::int64_t nk, const DropoutStream& s, Stream stream) {
  DeviceGuard guard(device);
  const Family fam = family_for(device_info(device), DType::f16);  // any loadable family's kernel: same function
  auto* launch = fam == Family::sm80   ? dropout_mask_sm80
                 : fam == Family::sm86 ? dropout_mask_sm86
                 : fam == Family::sm90 ? dropout_mask_sm90
                                       : dropout_mask_sm75;
  check(static_cast<cudaError_t>(launch(mask, batch, hq, nq, nk, s, stream.handle)), "dropout_mask kernel launch");
}

}  // namespace flatattn::cuda
