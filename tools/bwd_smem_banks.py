#!/usr/bin/env python3
"""Shared-memory bank conflicts of the CUDA backward's access patterns, counted by hand.

Models src/cuda/common/smem_tile.cuh (16-byte chunk index XOR bits 7-9 of the offset, column blocks of
64 or 32 elements) and the lane addressing of sm80/bwd_kernel.cuh, sm80/bwd_gemm.cuh and
common/tile_io.cuh, then counts, per CTA and query-block step, each access pattern's instructions and
the extra shared-memory wavefronts its addresses cost beyond the minimum (what Nsight Compute's
l1tex__data_bank_conflicts_pipe_lsu_mem_shared_* counters report for that instruction alone):
  ldmatrix .x4 (S/dP, dV/dK, dQ operands): four phases of 8 lanes x 16 bytes;
  32-bit stores of P and dS (store_frags): one phase of 32 lanes;
  16-byte cp.async fills of Q and dO (load_tile_stepped): four phases of 8 lanes.
It also checks that frag_at() (base XOR + constant) equals offset() for every fragment it models.

    python3 tools/bwd_smem_banks.py                      # the sm80 bwd_tile entries at D = 64 and 128
    python3 tools/bwd_smem_banks.py D BM BN WARPS SWM SWN KWN KWD QWM QWD
"""
import sys


class Tile:
    """SmemTile<rows, d>."""

    def __init__(self, rows, d):
        self.w = 64 if d % 64 == 0 else 32
        self.row_bytes = self.w * 2
        self.block_bytes = rows * self.row_bytes

    def offset(self, r, c):
        lin = r * self.row_bytes + (c % self.w) * 2
        return (c // self.w) * self.block_bytes + (lin ^ (((lin >> 7) & 7) << 4))

    def frag_at(self, base, dr, dc):
        return (base ^ (((dc % self.w) // 8) << 4)) + dr * self.row_bytes + (dc // self.w) * self.block_bytes


def a_row(lane): return lane & 15
def a_col(lane): return (lane >> 4) * 8
def b_row(lane): return (lane & 7) + ((lane >> 4) << 3)
def b_col(lane): return ((lane >> 3) & 1) * 8


def extra_wavefronts(addrs, lanes_per_phase, nbytes):
    """Wavefronts beyond one per phase: per phase, the most distinct 4-byte words that share a bank."""
    extra = 0
    for p in range(0, len(addrs), lanes_per_phase):
        banks = {}
        for a in addrs[p:p + lanes_per_phase]:
            for w in range(nbytes // 4):
                word = a // 4 + w
                banks.setdefault(word % 32, set()).add(word)
        extra += max(len(v) for v in banks.values()) - 1
    return extra


def count(d, bm, bn, warps, swm, swn, kwn, kwd, qwm, qwd):
    tq, tkv, tp = Tile(bm, d), Tile(bn, d), Tile(bm, bn)
    smt, snt = bm // (16 * swm), bn // (8 * swn)
    kmt, kdt = bn // (16 * kwn), d // (8 * kwd)
    qmt, qdt = bm // (16 * qwm), d // (8 * qwd)
    res = {}

    def add(name, n_instr, extra):
        r = res.setdefault(name, [0, 0])
        r[0] += n_instr
        r[1] += extra

    def ldsm(name, tile, lane_rc, dr, dc, times=1):
        addrs = []
        for lane in range(32):
            r, c = lane_rc(lane)
            a = tile.offset(r + dr, c + dc)
            assert a == tile.frag_at(tile.offset(r, c), dr, dc), (name, lane, dr, dc)
            addrs.append(a)
        add(name, times, times * extra_wavefronts(addrs, 8, 16))

    for w in range(warps):
        if w < swm * swn:  # S = Q K^T and dP = dO V^T: same addressing, twice
            r0, c0 = (w % swm) * smt * 16, (w // swm) * snt * 8
            for kk in range(d // 16):
                for mt in range(smt):
                    ldsm("S, dP: A (Q, dO)", tq, lambda l: (r0 + a_row(l), a_col(l)), mt * 16, kk * 16, 2)
                for np_ in range(snt // 2):
                    ldsm("S, dP: B (K, V)", tkv, lambda l: (c0 + b_row(l), b_col(l)), np_ * 16, kk * 16, 2)
            for mt in range(smt):
                for h in range(2):
                    for nt in range(snt):
                        addrs = [tp.offset(r0 + mt * 16 + (l >> 2) + 8 * h, c0 + nt * 8) + 4 * (l & 3) for l in range(32)]
                        add("P, dS stores (32-bit)", 2, 2 * extra_wavefronts(addrs, 32, 4))
        if w < kwn * kwd:  # dV += P^T dO and dK += dS^T Q
            r0, c0 = (w % kwn) * kmt * 16, (w // kwn) * kdt * 8
            for kk in range(bm // 16):
                for mt in range(kmt):
                    ldsm("dV, dK: A (P^T, dS^T)", tp, lambda l: (b_row(l), r0 + b_col(l)), kk * 16, mt * 16, 2)
                for np_ in range(kdt // 2):
                    ldsm("dV, dK: B (dO, Q)", tq, lambda l: (a_row(l), c0 + a_col(l)), kk * 16, np_ * 16, 2)
        if w < qwm * qwd:  # dQ = dS K
            r0, c0 = (w % qwm) * qmt * 16, (w // qwm) * qdt * 8
            for kk in range(bn // 16):
                for mt in range(qmt):
                    ldsm("dQ: A (dS)", tp, lambda l: (r0 + a_row(l), a_col(l)), mt * 16, kk * 16)
                for np_ in range(qdt // 2):
                    ldsm("dQ: B (K)", tkv, lambda l: (a_row(l), c0 + a_col(l)), kk * 16, np_ * 16)
    threads, chunks = 32 * warps, d // 8  # load_tile_stepped's fast path: Q and dO, 16-byte cp.async
    for wi in range(warps):
        for i in range(bm * chunks // threads):
            addrs = []
            for lane in range(32):
                tid = wi * 32 + lane
                addrs.append(tq.offset(tid // chunks + i * (threads // chunks), (tid % chunks) * 8))
            add("Q, dO fills (cp.async 16 B)", 2, 2 * extra_wavefronts(addrs, 8, 16))
    print(f"D = {d}, {bm} x {bn}, {warps} warps (sdp {swm}x{swn}, dkv {kwn}x{kwd}, dq {qwm}x{qwd}), per CTA and step:")
    for name, (n, extra) in res.items():
        print(f"  {name:30s} {n:5d} instructions, {extra:4d} extra wavefronts")


if __name__ == "__main__":
    if len(sys.argv) == 11:
        count(*map(int, sys.argv[1:]))
    elif len(sys.argv) == 1:
        count(128, 64, 128, 8, 2, 4, 4, 2, 2, 4)  # bwd_tile(sm80, 128)
        count(64, 128, 128, 8, 2, 4, 4, 2, 4, 2)  # bwd_tile(sm80, 64)
    else:
        sys.exit(__doc__)
