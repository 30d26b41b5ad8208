#!/usr/bin/env python3
"""Benchmark of xenguest-mkimage against baselines on the same machine and run.

Measures, with a rootfs tarball of --size-mib (default 1024):

1. assembling a file image from a kernel, a dtb and the rootfs tarball, against
   ``cp`` of the same bytes (goal: at most 1.3 x) and against the naive approach
   of the earlier tool (stage a directory, then ``tar -cf`` it).  Every byte is
   also hashed for the manifest, so the floor is the slower of ``cp`` and one
   core's SHA-256 of the same bytes (hashlib, reading the files), printed too;
2. the peak memory (RSS) of that assembly (goal: under 100 MB whatever the size);
3. a metadata update (``update IMG --xen-memory=1024``) on the packed image
   (goal: under 100 ms, independent of the payload size), against the naive
   unpack-edit-repack approach, and the start of the same interpreter doing
   nothing (the part of the update's time that is not ours).

Each figure is the median of --runs runs, with the page cache warm for
everyone and dirty data written back before each run.  Ratios are printed; nothing is asserted.
"""

import os
import resource
import shutil
import subprocess
import sys
from typing import Callable, List, Tuple

from benchlib import MKIMAGE, bench_arguments, make_rootfs, print_rows, sh, timed, work_folder

SHA256_FILES = """
import hashlib, sys
for path in sys.argv[1:]:
    digest, buffer = hashlib.sha256(), bytearray(1 << 20)
    with open(path, "rb", buffering=0) as f:
        for n in iter(lambda: f.readinto(buffer), 0):
            digest.update(memoryview(buffer)[:n])
"""


def peak_rss_mib(cmd: List[str]) -> float:
    """Peak RSS of one run of *cmd*, from a fresh child-accounting process."""
    probe = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run([sys.executable, "-c", probe] + cmd, check=True,
                         stdout=subprocess.PIPE).stdout
    return int(out.split()[-1]) / 1024


def main() -> int:
    parser = bench_arguments(__doc__, 1024, "rootfs tarball size")
    args = parser.parse_args()
    with work_folder("mkimage", args.dir) as work:
        kernel = os.path.join(work, "Image")
        dtb = os.path.join(work, "guest.dtb")
        rootfs = os.path.join(work, "rootfs.tar")
        with open(kernel, "wb") as f:
            f.write(os.urandom(20 << 20))
        with open(dtb, "wb") as f:
            f.write(os.urandom(64 << 10))
        make_rootfs(rootfs, args.size_mib)
        payload = sum(os.path.getsize(p) for p in (kernel, dtb, rootfs))
        image = os.path.join(work, "guest.xenguest")
        create = MKIMAGE + [
            "create", image, f"--xen-kernel={kernel}", f"--xen-device-tree={dtb}",
            "--disk-size=4", "--disk-add-part=1:4:ext4:rootfs.tar", f"--disk-add-file={rootfs}",
        ]
        copies = os.path.join(work, "copies")

        def reset_copies() -> None:
            shutil.rmtree(copies, ignore_errors=True)
            os.mkdir(copies)

        def remove(path: str) -> Callable[[], None]:
            def run() -> None:
                if os.path.lexists(path):
                    os.unlink(path)
            return run

        t_cp = timed(lambda: sh("cp", kernel, dtb, rootfs, copies), args.runs, reset_copies)
        t_ours = timed(lambda: sh(*create), args.runs, remove(image))
        t_sha = timed(lambda: sh(sys.executable, "-c", SHA256_FILES, kernel, dtb, rootfs),
                      args.runs)
        stage = os.path.join(work, "stage")
        naive_image = os.path.join(work, "naive.xenguest")

        def naive_create() -> None:
            shutil.rmtree(stage, ignore_errors=True)
            for sub in ("files", "disk", "guest.d", "init.d", "init.pre", "init.post"):
                os.makedirs(os.path.join(stage, sub))
            sh("cp", kernel, os.path.join(stage, "files", "kernel"))
            sh("cp", dtb, os.path.join(stage, "files", "guest.dtb"))
            sh("cp", rootfs, os.path.join(stage, "disk", "rootfs.tar"))
            for name in ("guest.cfg", "params.cfg", "disk.cfg"):
                with open(os.path.join(stage, name), "w") as f:
                    f.write("memory = 512\n")
            sh("tar", "-C", stage, "-cf", naive_image, ".")

        t_naive = timed(naive_create, args.runs)
        rss = peak_rss_mib(create)

        update = MKIMAGE + ["update", image, "--xen-memory=1024"]
        memory = iter(range(1000, 100000))

        def run_update() -> None:
            sh(*(update[:-1] + [f"--xen-memory={next(memory)}"]))

        sh(*create)
        t_update = timed(run_update, max(args.runs, 5))
        t_start = timed(lambda: sh(sys.executable, "-c", "pass"), max(args.runs, 5))
        sh(*(MKIMAGE + ["pack", image, image]))

        unpacked = os.path.join(work, "unpacked")

        def naive_update() -> None:
            shutil.rmtree(unpacked, ignore_errors=True)
            os.mkdir(unpacked)
            sh("tar", "-C", unpacked, "-xf", naive_image)
            with open(os.path.join(unpacked, "guest.cfg"), "w") as f:
                f.write("memory = 1024\n")
            sh("tar", "-C", unpacked, "-cf", naive_image + ".new", ".")
            os.replace(naive_image + ".new", naive_image)

        t_naive_update = timed(naive_update, args.runs)

        rows: List[Tuple[str, str]] = [
            ("payload", f"{payload / (1 << 20):.0f} MiB (kernel 20 MiB, dtb 64 KiB, rootfs "
                        f"{args.size_mib} MiB), median of {args.runs} runs"),
            ("cp of the same bytes", f"{t_cp:.3f} s"),
            ("SHA-256 of the same bytes", f"{t_sha:.3f} s  (python3 hashlib, one core)"),
            ("xenguest-mkimage create", f"{t_ours:.3f} s"),
            ("naive stage + tar -cf", f"{t_naive:.3f} s"),
            ("create / cp", f"{t_ours / t_cp:.2f}  (goal <= 1.30)"),
            ("create / max(cp, SHA-256)", f"{t_ours / max(t_cp, t_sha):.2f}  (1.00 = the floor)"),
            ("create / naive", f"{t_ours / t_naive:.2f}"),
            ("create peak RSS", f"{rss:.1f} MiB  (goal < 100 MiB)"),
            ("update --xen-memory", f"{t_update * 1000:.1f} ms  (goal < 100 ms)"),
            ("python3 -c pass", f"{t_start * 1000:.1f} ms  (the interpreter's start)"),
            ("naive unpack + repack", f"{t_naive_update * 1000:.1f} ms"),
            ("update / naive", f"{t_update / t_naive_update:.4f}"),
        ]
        print_rows(rows)
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
