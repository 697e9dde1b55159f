#!/usr/bin/env python3
"""How far ahead the backward kernel loads its MMA fragments, from its SASS.

For every HMMA, the distance (in instructions) back to the LDSM that wrote its A or B operand; a short
distance means the warp waits on the ldmatrix (Nsight Compute's "short scoreboard" stall) unless the
other warps of its scheduler cover it. The backward's loop issues its five products in a fixed order
(S = Q K^T, dP = dO V^T, dV += P^T dO, dQ = dS K, dK += dS^T Q), each with the same number of HMMAs
per warp, so the HMMAs are split into five equal groups in that order. Also counts LDSM, LDS, STS, LDL
(spill loads) and where the cp.async copies (LDGSTS) sit between the products.

Input: nvdisasm -c / cuobjdump -sass text of an object holding flash_bwd_kernel instances (one line per
kernel printed, with its BwdShape arguments).

    nvcc -std=c++20 -O3 -I. -Iinclude -arch=sm_90 -cubin bench/gpu/tune_bwd_d128.cu -o t.cubin
    nvdisasm -c t.cubin > t.sass   # nvdisasm: the CUDA toolkit, or pip's nvidia-cuda-nvdisasm wheel
    python3 tools/sass_mma_distance.py t.sass
"""
import collections
import re
import sys

PRODUCTS = ["S", "dP", "dV", "dQ", "dK"]


def kernels(path):
    """Kernel name -> its instructions (predicate stripped), in order."""
    out = collections.OrderedDict()
    cur = None
    for line in open(path):
        m = re.match(r"\s*(?:\.text\.|Function : )(\S+?):?\s*$", line)
        if m:
            cur = m.group(1)
            out[cur] = []
            continue
        m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;", line)
        if m and cur is not None:
            out[cur].append(re.sub(r"^@!?U?P\w+\s+", "", m.group(1).strip()))
    return out


def regs(tok, n):
    m = re.match(r"R(\d+)(?:\.reuse)?$", tok)  # operands may carry .reuse
    return set(range(int(m.group(1)), int(m.group(1)) + n)) if m else set()


def analyze(ins):
    writer = {}  # register -> index of the LDSM that wrote it (forgotten when anything else writes it)
    dist, ldgsts_after, counts = [], [], collections.Counter()
    for i, s in enumerate(ins):
        op = s.split()[0]
        args = [a.strip() for a in s[len(op):].split(",")]
        if op.startswith("LDSM"):
            counts["LDSM"] += 1
            for r in regs(args[0], 4 if ".4" in op else 2 if ".2" in op else 1):
                writer[r] = i
            continue
        if op.startswith("HMMA"):
            counts["HMMA"] += 1
            src = [writer[r] for r in regs(args[1], 4) | regs(args[2], 2) if r in writer]
            dist.append(i - max(src) if src else None)
            continue
        for name in ("LDS", "STS", "LDL", "STL", "LDGSTS"):
            if op == name or op.startswith(name + "."):
                counts[name] += 1
        if op.startswith("LDGSTS"):
            ldgsts_after.append(len(dist))
        if args and args[0].startswith("R"):
            for r in regs(args[0], 1):
                writer.pop(r, None)
    return len(ins), counts, dist, sorted(set(ldgsts_after))


def main(paths):
    for path in paths:
        for name, ins in kernels(path).items():
            if "flash_bwd_kernel" not in name:
                continue
            # BwdShape<D, BwdTileSize{...}>: D, then the tile's fields (older builds: plain int arguments)
            args = re.search(r"BwdShapeI((?:Li\d+E|Xtl\w*?BwdTileSizeE)+)", name).group(1)
            shape = re.findall(r"Li(\d+)E", args)
            n, counts, dist, ldg = analyze(ins)
            per = len(dist) // len(PRODUCTS)
            parts = []
            for k, p in enumerate(PRODUCTS):
                d = [x for x in dist[k * per:(k + 1) * per] if x is not None]
                parts.append(f"{p} {sum(x < 8 for x in d):2d}/{len(d)} <8, mean {sum(d) / max(len(d), 1):4.1f}")
            print(f"{','.join(shape)}: {n} instr, LDSM {counts['LDSM']}, HMMA {counts['HMMA']}, LDS {counts['LDS']}, "
                  f"STS {counts['STS']}, LDL {counts['LDL']} | " + " | ".join(parts) + f" | LDGSTS after HMMA {ldg}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
