#!/usr/bin/env python3
"""Checks the include rule of docs/layout.md on the CUDA kernel folders, so it cannot drift:
  - src/cuda/sm90/ and src/cuda/flat/ include only src/cuda/common/, src/cuda/policy/ and their own folder;
  - src/cuda/common/ includes no family folder (sm80/, sm90/, flat/): what two families share lives there.
Both may include src/core/ headers that are host+device (variant.h, mask.h) and system headers.

    python3 tools/check_layout.py    # exit 1 and one line per violation
"""
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
CUDA = ROOT / "src" / "cuda"
INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"')


def allowed(folder, target):
    if target.startswith("src/core/"):
        return True
    if folder == "common":
        return not re.match(r"src/cuda/(sm80|sm90|flat)/", target)
    return target.startswith(("src/cuda/common/", "src/cuda/policy/", f"src/cuda/{folder}/"))


def main():
    bad = []
    for folder in ("sm90", "flat", "common"):
        for path in sorted((CUDA / folder).glob("*")):
            if not path.is_file():
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                m = INCLUDE.match(line)
                if m and not allowed(folder, m.group(1)):
                    bad.append(f"{path.relative_to(ROOT)}:{n}: includes {m.group(1)} (docs/layout.md: the dependency rule)")
    for b in bad:
        print(b, file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
