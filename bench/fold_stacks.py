#!/usr/bin/env python3
"""Folds `perf script` output (read on stdin) into one line per distinct stack.

    perf script -i perf.data | bench/fold_stacks.py OUT_DIR

Writes OUT_DIR/stacks.folded ("root;...;leaf COUNT", the input of inferno-flamegraph,
flamegraph.pl and speedscope) and OUT_DIR/top.txt: the functions with the largest inclusive
and self share of all samples.
"""

import collections
import os
import re
import sys

OFFSET = re.compile(r"\+0x[0-9a-f]+$")


def frames(block):
    """The stack of one sample, root first."""
    out = []
    for line in block[1:]:
        parts = line.strip().split(" ", 1)
        if len(parts) != 2:
            continue
        symbol = parts[1]
        if symbol.endswith(")") and " (" in symbol:
            symbol = symbol[: symbol.rindex(" (")]
        symbol = OFFSET.sub("", symbol).replace(";", ":")
        out.append(symbol)
    out.reverse()
    return out


def samples(stream):
    block = []
    for line in stream:
        line = line.rstrip("\n")
        if line.strip():
            block.append(line)
        elif block:
            yield frames(block)
            block = []
    if block:
        yield frames(block)


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: perf script | fold_stacks.py OUT_DIR")
    out_dir = sys.argv[1]
    stacks = collections.Counter()
    for stack in samples(sys.stdin):
        if stack:
            stacks[";".join(stack)] += 1
    total = sum(stacks.values())
    if total == 0:
        sys.exit("fold_stacks.py: no samples with stacks in the input")
    inclusive = collections.Counter()
    own = collections.Counter()
    for stack, count in stacks.items():
        names = stack.split(";")
        for name in set(names):
            inclusive[name] += count
        own[names[-1]] += count
    with open(os.path.join(out_dir, "stacks.folded"), "w") as f:
        for stack, count in sorted(stacks.items()):
            f.write(f"{stack} {count}\n")
    with open(os.path.join(out_dir, "top.txt"), "w") as f:
        f.write(f"{total} samples\n\nself %  function\n")
        for name, count in own.most_common(40):
            f.write(f"{100 * count / total:6.2f}  {name[:200]}\n")
        f.write("\ninclusive %  function\n")
        for name, count in inclusive.most_common(80):
            f.write(f"{100 * count / total:6.2f}  {name[:200]}\n")


if __name__ == "__main__":
    main()
