// nccl_transport (include/flatattn/context_parallel.h): the ring's exchanges as ncclSend/ncclRecv pairs in one
// group on the transport's own stream, ordered after the caller's compute stream by an event at post() and
// before its later work by an event at wait(), so transfers overlap the compute in between (NCCL user guide,
// "Point-to-point communication" and "Group calls"). Built with -DFLATATTN_NCCL=ON.
#include <cuda_runtime.h>
#include <nccl.h>

#include <map>
#include <string>
#include <vector>

#include "flatattn/context_parallel.h"

namespace flatattn {

namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw Error(Error::Kind::runtime, what, cudaGetErrorString(e), "the CUDA runtime call failed",
                "check the device of the communicator and the stream");
}

void nccl_check(ncclResult_t r, ncclComm_t comm, const char* what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw Error(Error::Kind::runtime, what, std::string(ncclGetErrorString(r)) + ": " + ncclGetLastError(comm),
                "the NCCL call failed", "check the communicator (every rank must run the ring together); "
                "NCCL_DEBUG=INFO tells more");
}

class NcclTransport final : public RingTransport {
 public:
  NcclTransport(ncclComm_t comm, int rank, int world, cudaStream_t compute) : comm_(comm), rank_(rank), world_(world) {
    (void)compute;
    cuda_check(cudaGetDevice(&device_), "cudaGetDevice");
    cuda_check(cudaStreamCreateWithFlags(&comm_stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
  }
  ~NcclTransport() override {
    for (auto& [t, e] : done_) cudaEventDestroy(e);
    for (cudaEvent_t e : free_) cudaEventDestroy(e);
    cudaStreamSynchronize(comm_stream_);
    cudaStreamDestroy(comm_stream_);
  }
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int world() const override { return world_; }
  [[nodiscard]] Device device() const override { return Device::cuda(device_); }

  int post(const void* send, void* recv, std::size_t bytes, int to, int from, Stream stream) override {
    const auto compute = static_cast<cudaStream_t>(stream.handle);
    cudaEvent_t ready = event();
    cuda_check(cudaEventRecord(ready, compute), "cudaEventRecord");  // send filled, recv no longer read
    cuda_check(cudaStreamWaitEvent(comm_stream_, ready, 0), "cudaStreamWaitEvent");
    free_.push_back(ready);  // reusable: the wait above captured it
    const int dst = ((rank_ + to) % world_ + world_) % world_, src = ((rank_ + from) % world_ + world_) % world_;
    nccl_check(ncclGroupStart(), comm_, "ncclGroupStart");
    nccl_check(ncclSend(send, bytes, ncclUint8, dst, comm_, comm_stream_), comm_, "ncclSend");
    nccl_check(ncclRecv(recv, bytes, ncclUint8, src, comm_, comm_stream_), comm_, "ncclRecv");
    nccl_check(ncclGroupEnd(), comm_, "ncclGroupEnd");
    cudaEvent_t done = event();
    cuda_check(cudaEventRecord(done, comm_stream_), "cudaEventRecord");
    const int ticket = next_++;
    done_[ticket] = done;
    return ticket;
  }

  void wait(int ticket, Stream stream) override {
    const auto it = done_.find(ticket);
    if (it == done_.end())
      throw Error(Error::Kind::invalid_argument, "ticket", std::to_string(ticket), "not a pending ticket",
                  "wait once for each ticket post() returned");
    cuda_check(cudaStreamWaitEvent(static_cast<cudaStream_t>(stream.handle), it->second, 0), "cudaStreamWaitEvent");
    free_.push_back(it->second);
    done_.erase(it);
  }

 private:
  cudaEvent_t event() {
    if (!free_.empty()) {
      cudaEvent_t e = free_.back();
      free_.pop_back();
      return e;
    }
    cudaEvent_t e;
    cuda_check(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), "cudaEventCreateWithFlags");
    return e;
  }

  ncclComm_t comm_;
  int rank_, world_, device_ = 0;
  cudaStream_t comm_stream_ = nullptr;
  int next_ = 0;
  std::map<int, cudaEvent_t> done_;
  std::vector<cudaEvent_t> free_;
};

}  // namespace

std::unique_ptr<RingTransport> nccl_transport(void* comm, int rank, int world, Stream stream) {
  if (comm == nullptr)
    throw Error(Error::Kind::invalid_argument, "comm", "null", "must be an initialized ncclComm_t",
                "create it with ncclCommInitRank (one rank per GPU)");
  auto c = static_cast<ncclComm_t>(comm);
  int count = 0, user_rank = 0;
  nccl_check(ncclCommCount(c, &count), c, "ncclCommCount");
  nccl_check(ncclCommUserRank(c, &user_rank), c, "ncclCommUserRank");
  if (world != count)
    throw Error(Error::Kind::invalid_argument, "world", "world = " + std::to_string(world),
                "must equal the communicator's size " + std::to_string(count), "pass ncclCommCount's value");
  if (rank < 0 || rank >= world || rank != user_rank)
    throw Error(Error::Kind::invalid_argument, "rank", "rank = " + std::to_string(rank),
                "must be this process's rank in the communicator (" + std::to_string(user_rank) + ") within [0, " +
                    std::to_string(world) + ")",
                "pass ncclCommUserRank's value");
  return std::make_unique<NcclTransport>(c, rank, world, static_cast<cudaStream_t>(stream.handle));
}

bool nccl_built() { return true; }

}  // namespace flatattn
