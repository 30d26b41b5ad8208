#!/usr/bin/env python3
"""Benchmark of ``xenguest-mkimage check --verify`` against ``sha256sum``.

Builds a file image around a rootfs tarball of --size-mib (default 1024) and
times, with the page cache warm for both:

1. ``xenguest-mkimage check --verify IMG``: every member's SHA-256 recomputed,
   streaming, and compared with the manifest;
2. ``sha256sum`` of the same bytes (the image file itself);

and prints their ratio (goal: at most 1.1 x).  Each figure is the median of
--runs runs.  Nothing is asserted.
"""

import argparse
import os
import shutil
import sys
import tempfile

from benchlib import MKIMAGE, make_rootfs, print_rows, sh, timed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="rootfs size")
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="xenguest-bench-verify-", dir=args.dir)
    try:
        rootfs = os.path.join(work, "rootfs.tar")
        make_rootfs(rootfs, args.size_mib)
        image = os.path.join(work, "guest.xenguest")
        sh(*MKIMAGE, "create", image, "--disk-size=4", "--disk-add-part=1:4:ext4:rootfs.tar",
           f"--disk-add-file={rootfs}")
        os.unlink(rootfs)
        sh("cat", image)  # warm the page cache for both
        t_sum = timed(lambda: sh("sha256sum", image), args.runs)
        t_verify = timed(lambda: sh(*MKIMAGE, "check", "--verify", image), args.runs)
        size = os.path.getsize(image)
        rows = [
            ("image", f"{size / (1 << 20):.0f} MiB, median of {args.runs} runs, warm cache"),
            ("sha256sum", f"{t_sum:.3f} s"),
            ("check --verify", f"{t_verify:.3f} s"),
            ("check --verify / sha256sum", f"{t_verify / t_sum:.2f}  (goal <= 1.10)"),
        ]
        print_rows(rows)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
