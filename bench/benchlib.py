"""Shared pieces of the benchmarks: the command, timing, inputs and the report."""

import argparse
import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MKIMAGE = [sys.executable, os.path.join(ROOT, "meta-xenguest", "scripts", "xenguest-mkimage")]
MANAGER = [sys.executable, os.path.join(ROOT, "meta-xenguest", "scripts", "xenguest-manager")]


def bench_arguments(doc: str, size_mib: int, size_help: str) -> argparse.ArgumentParser:
    """The options every benchmark takes: --size-mib, --runs and --dir."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=size_mib, help=size_help)
    parser.add_argument("--runs", type=int, default=3, help="runs per figure (median)")
    parser.add_argument("--dir", default=None, help="work folder (default: a temporary one)")
    return parser


@contextlib.contextmanager
def work_folder(name: str, parent: Optional[str]) -> Iterator[str]:
    """A new folder for one benchmark's files (in *parent*, else the temporary
    folder), removed with everything in it afterwards."""
    work = tempfile.mkdtemp(prefix=f"xenguest-bench-{name}-", dir=parent)
    try:
        yield work
    finally:
        shutil.rmtree(work, ignore_errors=True)


def sh(*cmd: str) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def timed(run: Callable[[], None], runs: int, setup: Callable[[], None] = lambda: None) -> float:
    """Median wall time of *runs* runs; dirty data is written back before each."""
    times: List[float] = []
    for _ in range(runs):
        setup()
        os.sync()  # no write-back of an earlier run's data during this one
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_rootfs(path: str, size_mib: int) -> None:
    """A real tar archive holding one file of incompressible data, written in a stream."""
    block = os.urandom(1 << 20)

    class Source:
        def __init__(self, size: int) -> None:
            self.left = size

        def read(self, n: int = -1) -> bytes:
            n = self.left if n < 0 else min(n, self.left)
            out = (block * (n // len(block) + 1))[:n]
            self.left -= n
            return out

    data_size = (size_mib << 20) - (1 << 20)
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tf:
        info = tarfile.TarInfo("data.bin")
        info.size = data_size
        tf.addfile(info, Source(data_size))


def make_tree_tar(path: str, files: int, size_mib: int, fresh: bool = False) -> int:
    """A rootfs-like tarball (*files* files in nested folders, sizes from 100 bytes
    to 256 KiB, some symbolic links, about *size_mib* of content); returns the bytes
    of content.  Files hold slices of one random block, or with *fresh* random
    bytes of their own (incompressible: the worst case for compressed copies)."""
    rng = random.Random(7)
    sizes = [rng.choice((100, 900, 4000, 12000, 60000, 262144)) for _ in range(files)]
    scale = (size_mib << 20) / max(sum(sizes), 1)
    block = os.urandom(1 << 18)
    total = 0
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        folders = ["."]
        for i in range(files // 40 + 1):
            parent = rng.choice(folders)
            folder = f"{parent}/d{i}"
            info = tarfile.TarInfo(folder)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
            folders.append(folder)
        for i, size in enumerate(sizes):
            size = min(int(size * scale), len(block))
            info = tarfile.TarInfo(f"{rng.choice(folders)}/f{i}")
            info.size, info.mode = size, 0o755 if i % 10 == 0 else 0o644
            tar.addfile(info, _Bytes(os.urandom(size) if fresh else block[:size]))
            total += size
            if i % 25 == 0:
                link = tarfile.TarInfo(f"{rng.choice(folders)}/l{i}")
                link.type, link.linkname = tarfile.SYMTYPE, f"../f{i}"
                tar.addfile(link)
    return total


class _Bytes:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out, self.pos = self.data[self.pos:end], min(end, len(self.data))
        return out


def manager_settings(work: str, guest: str = "bench") -> Callable[[], None]:
    """Point xenguest-manager at a state folder in *work* (file disks, no guest
    folders, warnings only); return a function removing guest *guest* if it exists."""
    state = os.path.join(work, "state")
    config = os.path.join(work, "manager.conf")
    with open(config, "w") as f:
        f.write(f"[manager]\nstate_folder = {state}\nguest_folders =\nhost_scripts =\n"
                f"[log]\nfile = {os.path.join(work, 'manager.log')}\nlevel = warning\n"
                "[disk]\nbackend = file\n")
    os.environ["XENGUEST_MANAGER_CONFIG"] = config

    def remove_guest() -> None:
        if os.path.isdir(os.path.join(state, "guests", guest)):
            sh(*MANAGER, "remove", guest)

    return remove_guest


def print_rows(rows: Sequence[Tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
