// LocalRing (include/flatattn/context_parallel.h): the ring's transport between threads of one process. A post
// publishes the send buffer under (source, destination, sequence number); the receiver's wait copies it into its
// receive buffer and retires it; the sender's wait returns once its message is retired, so the send buffer may
// then be reused. Every member posts the same sequence of exchanges (the ring code does), so sequence numbers pair.
#include <condition_variable>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "flatattn/context_parallel.h"
#include "src/cp/ring_ops.h"

namespace flatattn {

struct LocalRing::Hub {
  int world = 1;
  Device device{};
  std::mutex mu;
  std::condition_variable cv;
  struct Message {
    const void* data;
    std::size_t bytes;
  };
  std::map<std::tuple<int, int, long>, Message> box;  // (source, destination, sequence) -> posted, unconsumed
};

namespace {

class LocalMember final : public RingTransport {
 public:
  LocalMember(LocalRing::Hub* hub, int rank) : hub_(hub), rank_(rank) {}
  [[nodiscard]] int rank() const override { return rank_; }
  [[nodiscard]] int world() const override { return hub_->world; }
  [[nodiscard]] Device device() const override { return hub_->device; }

  int post(const void* send, void* recv, std::size_t bytes, int to, int from, Stream stream) override {
    cp::synchronize(hub_->device, stream);  // the send buffer's contents are final
    const long seq = next_++;
    const int w = hub_->world;
    Pending p{((rank_ + to) % w + w) % w, ((rank_ + from) % w + w) % w, recv, bytes, seq};
    {
      std::lock_guard<std::mutex> lock(hub_->mu);
      hub_->box[{rank_, p.dst, seq}] = {send, bytes};
    }
    hub_->cv.notify_all();
    pending_[static_cast<int>(seq)] = p;
    return static_cast<int>(seq);
  }

  void wait(int ticket, Stream stream) override {
    const auto it = pending_.find(ticket);
    if (it == pending_.end())
      throw Error(Error::Kind::invalid_argument, "ticket", std::to_string(ticket), "not a pending ticket of this member",
                  "wait once for each ticket post() returned");
    const Pending p = it->second;
    pending_.erase(it);
    std::unique_lock<std::mutex> lock(hub_->mu);
    const auto in = std::make_tuple(p.src, rank_, p.seq);
    hub_->cv.wait(lock, [&] { return hub_->box.count(in) > 0; });
    const Hub::Message m = hub_->box[in];
    if (m.bytes != p.bytes) {
      hub_->box.erase(in);
      hub_->cv.notify_all();
      throw Error(Error::Kind::runtime, "transport", std::to_string(m.bytes) + " bytes from rank " +
                  std::to_string(p.src) + " for a receive of " + std::to_string(p.bytes),
                  "the paired post of every rank must move the same bytes", "call the ring on every rank together");
    }
    lock.unlock();  // the message stays published until retired: its sender is blocked in its own wait
    cp::copy_bytes(p.recv, m.data, p.bytes, hub_->device, stream);
    lock.lock();
    hub_->box.erase(in);
    hub_->cv.notify_all();
    const auto out = std::make_tuple(rank_, p.dst, p.seq);
    hub_->cv.wait(lock, [&] { return hub_->box.count(out) == 0; });
  }

 private:
  using Hub = LocalRing::Hub;
  struct Pending {
    int dst, src;
    void* recv;
    std::size_t bytes;
    long seq;
  };
  LocalRing::Hub* hub_;
  int rank_;
  long next_ = 0;
  std::map<int, Pending> pending_;
};

}  // namespace

LocalRing::LocalRing(int world, Device device) : hub_(std::make_unique<Hub>()) {
  if (world < 1)
    throw Error(Error::Kind::invalid_argument, "world", "world = " + std::to_string(world),
                "a ring has at least one member", "pass the number of ranks (>= 1)");
  hub_->world = world;
  hub_->device = device;
}

LocalRing::~LocalRing() = default;

int LocalRing::world() const { return hub_->world; }

std::unique_ptr<RingTransport> LocalRing::member(int rank) {
  if (rank < 0 || rank >= hub_->world)
    throw Error(Error::Kind::invalid_argument, "rank", "rank = " + std::to_string(rank),
                "must be in [0, world) = [0, " + std::to_string(hub_->world) + ")", "pass a rank of the ring");
  return std::make_unique<LocalMember>(hub_.get(), rank);
}

}  // namespace flatattn
