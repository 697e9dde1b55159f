"""The per-rank body of tests/python/test_distributed.py (its own module so torch.multiprocessing.spawn can
import it in the children): joins a gloo group, runs every case on its shard, and saves outputs, gradients and
the errors the bad-input scenarios raised."""

import datetime
import os

import torch
import torch.distributed as dist


def _error(fn):
    """(class name, argument) of the FlatattnError fn raised, or None when it raised none."""
    import flatattn

    try:
        fn()
    except flatattn.FlatattnError as e:
        return (type(e).__name__, e.argument, str(e))
    return None


def bad_input(rank, world, device):
    """Scenarios of bad input, run collectively: each records what this rank raised."""
    import flatattn.distributed as cp

    g = torch.Generator().manual_seed(7)
    dtype = torch.float32 if device == "cpu" else torch.bfloat16

    def t(n, h=2, d=8):
        return torch.randn(1, n, h, d, generator=g).to(device=device, dtype=dtype)

    res = {}
    n = 8 if rank == 0 else 6  # uneven shards
    q = t(n)
    res["uneven"] = _error(lambda: cp.ring_attention(q, q, q))
    q = t(7)
    res["odd_zigzag"] = _error(lambda: cp.ring_attention(q, q, q, causal=True))
    q = t(8)
    res["options_differ"] = _error(lambda: cp.ring_attention(q, q, q, softcap=5.0 if rank == 1 else 0.0))
    k = t(8, d=4) if rank == 1 else t(8)
    res["bad_shape_one_rank"] = _error(lambda: cp.ring_attention(q, k, k))
    q3 = t(8, h=world + 1)
    res["ulysses_heads"] = _error(lambda: cp.ulysses_attention(q3, q3, q3))
    res["ulysses_uneven"] = _error(lambda: cp.ulysses_attention(t(n, h=world), t(n, h=world), t(n, h=world)))
    solo = dist.new_group([0])  # every rank must call new_group; rank > 0 is not a member
    qs = t(8)
    if rank == 0:  # a group of one: plain attention on the shard
        import flatattn.torch_ops as ops

        res["solo_err"] = float((cp.ring_attention(qs, qs, qs, group=solo, causal=True).float() -
                                 ops.attention(qs, qs, qs, causal=True)[0].float()).abs().max())
    else:
        res["not_member"] = _error(lambda: cp.ring_attention(qs, qs, qs, group=solo))
    res["shard_uneven"] = _error(lambda: cp.shard(torch.zeros(1, 4 * world + 2, 1, 1), rank, world))
    # dropout and document masks (issue 19)
    q = t(8)
    whole = torch.tensor([0, 8 * world], dtype=torch.int32)
    # one document over every shard: with dropout it meets the shard boundaries at columns 8 r, off the 64-key grid
    res["dropout_docs_unaligned"] = _error(lambda: cp.ring_attention(q, q, q, dropout_p=0.1, cu_seqlens=whole))
    qu = t(8, h=world)
    res["ulysses_bad_docs"] = _error(lambda: cp.ulysses_attention(qu, qu, qu, cu_seqlens=torch.tensor(
        [0, 9, 5, 8 * world], dtype=torch.int32)))
    res["dropout_unaligned"] = _error(lambda: cp.ring_attention(q, q, q, dropout_p=0.1, rng_state=(1, 2)))
    res["dropout_bad_p"] = _error(lambda: cp.ring_attention(q, q, q, dropout_p=1.0))
    res["docs_bad"] = _error(lambda: cp.ring_attention(q, q, q, cu_seqlens=torch.tensor([0, 5], dtype=torch.int32)))
    differ = torch.tensor([0, 3 if rank == 1 else 4, 8 * world], dtype=torch.int32)
    res["docs_differ"] = _error(lambda: cp.ring_attention(q, q, q, cu_seqlens=differ))
    q64 = t(64)  # n_local on the dropout stream's 64-key grid (kDropoutColAlign)
    res["rng_differ"] = _error(lambda: cp.ring_attention(q64, q64, q64, dropout_p=0.1, rng_state=(1, rank)))
    # rng_state=None: every rank draws from its own generator (seeded differently here), rank 0's pair is used
    from flatattn.flash_attn_interface import draw_rng_state

    torch.manual_seed(100 + rank)
    state = torch.get_rng_state()
    pair = torch.tensor(draw_rng_state(q64.device), dtype=torch.int64)
    torch.set_rng_state(state)
    dist.broadcast(pair, src=0)
    drawn = cp.ring_attention(q64, q64, q64, dropout_p=0.3)
    given = cp.ring_attention(q64, q64, q64, dropout_p=0.3, rng_state=tuple(int(x) for x in pair))
    res["drawn_rng_equal"] = bool(torch.equal(drawn, given))
    return res


def run(rank, world, port, path, backend="gloo"):
    """backend 'gloo': CPU tensors; 'nccl': rank r on cuda:r (the cases' float32 ones are skipped there)."""
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    device = "cpu"
    if backend == "nccl":
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # NVLink multicast off (the device docs)
        torch.cuda.set_device(rank)
        device = f"cuda:{rank}"
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=120))
    import flatattn.distributed as cp

    cases = torch.load(os.path.join(path, "cases.pt"))
    results = {}
    for c in cases:
        if device != "cpu" and c["q"].dtype == torch.float32:
            continue  # the CUDA kernels take 16-bit inputs
        layout = c["layout"]
        q, k, v, dout = (cp.shard(c[x], rank, world, layout).to(device).requires_grad_(x != "dout")
                         for x in ("q", "k", "v", "dout"))
        kw = dict(causal=c["causal"], window=c["window"], softcap=c["softcap"])
        if c.get("dropout"):
            kw.update(dropout_p=c["dropout"][0], rng_state=c["dropout"][1:])
        if c.get("cu_seqlens") is not None:
            kw.update(cu_seqlens=torch.tensor(c["cu_seqlens"], dtype=torch.int32))
        if c["kind"] == "ring":
            out = cp.ring_attention(q, k, v, layout=layout, **kw)
        else:
            out = cp.ulysses_attention(q, k, v, **kw)
        out.backward(dout.detach())
        results[c["name"]] = {"out": out.detach().cpu(), "dq": q.grad.cpu(), "dk": k.grad.cpu(), "dv": v.grad.cpu()}
    results["_errors"] = bad_input(rank, world, device)
    torch.save(results, os.path.join(path, f"rank{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()
