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

import os
import sys

from benchlib import MKIMAGE, bench_arguments, make_rootfs, print_rows, sh, timed, work_folder


def main() -> int:
    parser = bench_arguments(__doc__, 1024, "rootfs size")
    args = parser.parse_args()
    with work_folder("verify", args.dir) as work:
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
