"""Summarize py-spy's collapsed stacks (``--format raw``): the functions with the most
samples, inclusive and self, restricted to the stacks under one frame (``--under``).

    python scripts/spy_summary.py profile.txt --under handle_batch --top 40
"""

from __future__ import annotations

import argparse
import re
from collections import Counter

_FRAME = re.compile(r"^(?P<fn>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"].split("site-packages/")[-1].split("/wt/hotpath/")[-1]
    return f"{match['fn']} ({path})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profile")
    parser.add_argument("--under", default="handle_batch", help="only stacks through this function name")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in open(args.profile, encoding="utf-8"):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames = [frame_name(f) for f in stack.split(";")]
        names = [f.split(" (")[0] for f in frames]
        if args.under not in names:
            continue
        frames = frames[names.index(args.under):]
        n = int(count)
        total += n
        for f in set(frames):
            inclusive[f] += n
        own[frames[-1]] += n
    print(f"{total} samples under {args.under}")
    print("inclusive:")
    for f, n in inclusive.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {f}")
    print("self:")
    for f, n in own.most_common(args.top):
        print(f"  {100 * n / total:5.1f} %  {f}")


if __name__ == "__main__":
    main()
