#!/usr/bin/env python3
"""Registers and spills of every kernel of two builds, side by side: reads the ptxas reports (-Xptxas -v,
FLATATTN_CUDA_PTXAS_VERBOSE=ON) that two `ninja` logs of the same instance files hold, and prints a markdown
table per instance and architecture (the main kernel of each instance file: its largest register count).

    python3 tools/ptxas_compare.py base.log new.log
"""
import re
import sys


def parse(path):
    """{(instance, arch): [(regs, spill_stores, spill_loads), ...]} in the order ptxas reported them."""
    res, inst, arch, stats = {}, None, None, None
    for line in open(path, errors="replace"):
        m = re.search(r"Building CUDA object \S+/inst/(\S+)\.cu\.o", line)
        if m:
            inst = m.group(1)
            continue
        m = re.search(r"Compiling entry function '\S+' for '(\S+)'", line)
        if m:
            arch = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m:
            stats = (int(m.group(2)), int(m.group(3)))
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and inst and arch and stats is not None:
            res.setdefault((inst, arch), []).append((int(m.group(1)),) + stats)
            stats = None
    return res


def main():
    a, b = parse(sys.argv[1]), parse(sys.argv[2])
    print("| instance | arch | base regs | new regs | base spills (st/ld B) | new spills (st/ld B) | |")
    print("|---|---|---|---|---|---|---|")
    for key in sorted(set(a) & set(b)):
        ka, kb = max(a[key]), max(b[key])  # the main kernel: the most registers
        same = "same" if ka == kb else ("better" if kb[0] <= ka[0] and kb[1:] <= ka[1:] else "WORSE")
        print(f"| {key[0]} | {key[1]} | {ka[0]} | {kb[0]} | {ka[1]}/{ka[2]} | {kb[1]}/{kb[2]} | {same} |")


if __name__ == "__main__":
    main()
