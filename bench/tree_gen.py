#!/usr/bin/env python3
"""tree_gen.py DIR COUNT SIZE [PER_DIR] - a benchmark tree, fast.

COUNT regular files of SIZE bytes (random bytes, each file different),
PER_DIR (default 100) to a directory: DIR/0/f0 .. DIR/0/f99, DIR/1/f100, ...
SIZE 0 makes empty files (the tree of the memory benchmark). DIR must not
exist. A shell loop of cp/touch takes minutes for 100,000 files; this takes
seconds."""
import os
import sys


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    top, count, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    per_dir = int(sys.argv[4]) if len(sys.argv) == 5 else 100
    os.mkdir(top)
    blob = os.urandom(size + 4096) if size else b""
    for i in range(count):
        d = os.path.join(top, str(i // per_dir))
        if i % per_dir == 0:
            os.mkdir(d)
        with open(os.path.join(d, "f%d" % i), "wb") as f:
            if size:
                off = (i * 8) % 4096  # a different window of the blob per file
                f.write(i.to_bytes(8, "little") + blob[off + 8:off + size])


if __name__ == "__main__":
    main()
