#include "cli/buffers.h"

#include "cli/device.h"

namespace flatattn::cli {

void DeviceMirror::Free::operator()(void* p) const { gpu::release(p); }

void DeviceMirror::upload(const check::HostTensor& h) {
  if (!ptr_) ptr_.reset(gpu::alloc(h.bytes()));
  gpu::to_device(ptr_.get(), h.storage.data(), h.bytes());
}

void DeviceMirror::download(check::HostTensor& h) const { gpu::to_host(h.storage.data(), ptr_.get(), h.bytes()); }

TensorView DeviceMirror::view(const check::HostTensor& h) const {
  TensorView v = h.view(Device::cuda(0));
  v.data = ptr_.get();
  return v;
}

}  // namespace flatattn::cli
