"""flatattn.distributed: context parallelism on torch.distributed (NCCL on GPUs, gloo on CPUs).

- :func:`ring_attention`: K/V shards passed around the ring, partial results merged in fp32 by their LSEs;
  zigzag load balancing for causal, GQA, sliding windows (hops outside the window skipped), softcap.
- :func:`ulysses_attention`: all-to-all from sequence to head sharding, local attention, all-to-all back.
- :mod:`flatattn.distributed.layout`: ``shard`` / ``unshard`` a full sequence into the zigzag or contiguous
  layout. The ring's predicted efficiency (compute per hop vs link time): ``flatattn model cp`` (C++ CLI).

See docs/context_parallel.md. Importing this module needs torch.
"""

from . import layout
from .layout import shard, unshard
from .ring import ring_attention
from .ulysses import ulysses_attention

__all__ = ["ring_attention", "ulysses_attention", "shard", "unshard", "layout"]
