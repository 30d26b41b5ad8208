#!/usr/bin/env python3
"""Benchmark of ``xenguest-manager create`` filling an ext4 disk from a rootfs tarball.

Builds a rootfs tarball shaped like a small Linux root filesystem (--files
files in nested folders, sizes from 100 bytes to 256 KiB, some symbolic
links; --size-mib in all), packs it into an image whose disk has one ext4
partition with that content, and times, with the page cache warm for both:

1. ``xenguest-manager create IMG`` with the file disk backend: verification,
   checks, a sparse disk file, sfdisk, mke2fs and the content written with
   ``debugfs`` from the tar stream, without mounting anything;
2. the baseline a build machine would use: ``tar -xf`` into a folder, then
   ``mke2fs -d FOLDER`` on a file of the partition's size.

Each figure is the median of --runs runs.  Ratios are printed; nothing is
asserted.  Needs sfdisk, mke2fs and debugfs (tools/setup-test-env).
"""

import os
import shutil
import sys

from benchlib import (MANAGER, MKIMAGE, bench_arguments, make_tree_tar, manager_settings,
                      print_rows, sh, timed, work_folder)

PART_MIB_EXTRA = 64


def main() -> int:
    parser = bench_arguments(__doc__, 128, "content of the rootfs")
    parser.add_argument("--files", type=int, default=5000, help="files in the rootfs")
    args = parser.parse_args()
    with work_folder("manager", args.dir) as work:
        rootfs = os.path.join(work, "rootfs.tar")
        content = make_tree_tar(rootfs, args.files, args.size_mib)
        part_mib = args.size_mib * 2 + PART_MIB_EXTRA
        image = os.path.join(work, "guest.xenguest")
        kernel = os.path.join(work, "Image")
        with open(kernel, "wb") as f:
            f.write(os.urandom(1 << 20))
        sh(*MKIMAGE, "create", image, f"--xen-kernel={kernel}", "--xen-memory=64",
           f"--disk-size={part_mib + 4}M",
           f"--disk-add-part=1:{part_mib}M:ext4:rootfs.tar", f"--disk-add-file={rootfs}")
        remove_guest = manager_settings(work)

        sh("cat", image, rootfs)  # warm the page cache for both
        t_create = timed(lambda: sh(*MANAGER, "create", image, "bench"), args.runs,
                         remove_guest)
        remove_guest()

        tree = os.path.join(work, "tree")
        disk = os.path.join(work, "baseline.img")

        def reset_baseline() -> None:
            shutil.rmtree(tree, ignore_errors=True)
            os.mkdir(tree)
            if os.path.exists(disk):
                os.unlink(disk)

        def baseline() -> None:
            sh("tar", "-C", tree, "-xf", rootfs)
            sh("mke2fs", "-q", "-F", "-t", "ext4", "-E", "root_owner=0:0", "-d", tree,
               disk, f"{part_mib}M")

        t_base = timed(baseline, args.runs, reset_baseline)
        rows = [
            ("rootfs", f"{args.files} files, {content / (1 << 20):.0f} MiB of content, "
                       f"a {part_mib} MiB ext4 partition; median of {args.runs} runs"),
            ("xenguest-manager create", f"{t_create:.2f} s"),
            ("tar -xf + mke2fs -d", f"{t_base:.2f} s"),
            ("create / baseline", f"{t_create / t_base:.2f}"),
            ("create per file", f"{t_create / args.files * 1000:.2f} ms"),
        ]
        print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
