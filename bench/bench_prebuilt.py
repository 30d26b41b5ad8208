#!/usr/bin/env python3
"""Benchmark of ``xenguest-manager create`` writing a prebuilt disk, against plain copies.

Builds a rootfs tarball shaped like a Linux root filesystem (--files files, --size-mib
of content, each file random bytes of its own: incompressible, the worst case for a
compressed disk), an image whose disk has one ext4 partition with that content, and the
same image with its disk prebuilt (``render-disk DISK.img.zst``, ``--disk-add-prebuilt``).
Then times, with the page cache warm for everyone and dirty data written back before
each run:

1. ``xenguest-manager create`` of the image with the prebuilt disk (file backend: the
   zstd program writes the sparse disk file, which is then flushed to storage);
2. ``cp --sparse=always`` of the same raw disk, then ``sync`` of the copy: the same
   bytes written and flushed (goal: create within 1.2 x of it); the copy alone too;
3. ``xenguest-manager create`` of the image without it: today's path (sfdisk, mke2fs,
   the content written with debugfs from the tar stream);
4. the start of the manager doing nothing (``--help``): the part of create that is
   not writing the disk.

Each figure is the median of --runs runs.  Ratios are printed; nothing is asserted.
Needs sfdisk, mke2fs, debugfs and zstd (tools/setup-test-env).
"""

import os
import sys

from benchlib import (MANAGER, MKIMAGE, bench_arguments, make_tree_tar, manager_settings,
                      print_rows, sh, timed, work_folder)


def main() -> int:
    parser = bench_arguments(__doc__, 1024, "content of the rootfs")
    parser.add_argument("--files", type=int, default=20000, help="files in the rootfs")
    args = parser.parse_args()
    with work_folder("prebuilt", args.dir) as work:
        rootfs = os.path.join(work, "rootfs.tar")
        content = make_tree_tar(rootfs, args.files, args.size_mib, fresh=True)
        part_mib = args.size_mib * 5 // 4 + 64
        kernel = os.path.join(work, "Image")
        with open(kernel, "wb") as f:
            f.write(os.urandom(1 << 20))
        built = os.path.join(work, "built.xenguest")
        sh(*MKIMAGE, "create", built, f"--xen-kernel={kernel}", "--xen-memory=64",
           f"--disk-size={part_mib}M",
           f"--disk-add-part=1:{part_mib}M:ext4:rootfs.tar", f"--disk-add-file={rootfs}")
        raw = os.path.join(work, "disk.img")
        packed = os.path.join(work, "disk.img.zst")
        sh(*MKIMAGE, "render-disk", built, raw)
        sh(*MKIMAGE, "render-disk", built, packed)
        prebuilt = os.path.join(work, "prebuilt.xenguest")
        sh(*MKIMAGE, "create", prebuilt, f"--xen-kernel={kernel}", "--xen-memory=64",
           f"--disk-size={part_mib}M",
           f"--disk-add-part=1:{part_mib}M:ext4:rootfs.tar", f"--disk-add-file={rootfs}",
           f"--disk-add-prebuilt={packed}")
        remove_guest = manager_settings(work)
        copy = os.path.join(work, "copy.img")

        def remove_copy() -> None:
            if os.path.exists(copy):
                os.unlink(copy)

        sh("cat", prebuilt, built, raw)  # warm the page cache for everyone
        t_prebuilt = timed(lambda: sh(*MANAGER, "create", prebuilt, "bench"), args.runs,
                           remove_guest)
        remove_guest()
        t_cp_sync = timed(lambda: sh("sh", "-c", f'cp --sparse=always "{raw}" "{copy}" && '
                                                 f'sync "{copy}"'), args.runs, remove_copy)
        t_cp = timed(lambda: sh("cp", "--sparse=always", raw, copy), args.runs, remove_copy)
        remove_copy()
        t_built = timed(lambda: sh(*MANAGER, "create", built, "bench"), args.runs, remove_guest)
        remove_guest()
        t_start = timed(lambda: sh(*MANAGER, "--help"), args.runs)
        rows = [
            ("rootfs", f"{args.files} files, {content / (1 << 20):.0f} MiB of random content, "
                       f"a {part_mib} MiB ext4 partition; median of {args.runs} runs"),
            ("disk", f"{os.path.getsize(raw) / (1 << 20):.0f} MiB, "
                     f"{os.stat(raw).st_blocks * 512 / (1 << 20):.0f} MiB of data; "
                     f"prebuilt {os.path.getsize(packed) / (1 << 20):.0f} MiB (zstd)"),
            ("create, prebuilt disk", f"{t_prebuilt:.2f} s"),
            ("cp --sparse=always + sync", f"{t_cp_sync:.2f} s"),
            ("cp --sparse=always", f"{t_cp:.2f} s"),
            ("create, disk built (debugfs)", f"{t_built:.2f} s"),
            ("manager start (--help)", f"{t_start:.2f} s"),
            ("prebuilt / (cp + sync)", f"{t_prebuilt / t_cp_sync:.2f}"),
            ("prebuilt - start / (cp + sync)", f"{(t_prebuilt - t_start) / t_cp_sync:.2f}"),
            ("built / prebuilt", f"{t_built / t_prebuilt:.2f}"),
        ]
        print_rows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
