# The peers scripts' timer, the method bench/gpu/timing.h mirrors for ours: triton.testing.do_bench (L2 flushed
# before each call, median of the CUDA-event times, ms) where triton exists, else the same by hand (256 MB zeroed
# before each timed call, 5 warm-up calls, median of 30). Import from a script in bench/gpu: `from peer_timing
# import bench`.
import torch

try:
    import triton

    def bench(fn, warmup=25, rep=100):
        return triton.testing.do_bench(fn, warmup=warmup, rep=rep, return_mode="median")  # ms
except ImportError:
    _flush = None

    def bench(fn, warmup=25, rep=100, reps=30):
        global _flush
        if _flush is None:
            _flush = torch.empty(256 << 20, dtype=torch.int8, device="cuda")
        for _ in range(5):
            fn()
        ts = []
        for _ in range(reps):
            _flush.zero_()
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record(); fn(); b.record()
            ts.append((a, b))
        torch.cuda.synchronize()
        ms = sorted(a.elapsed_time(b) for a, b in ts)
        return ms[len(ms) // 2]
