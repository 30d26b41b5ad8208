"""Shared pieces of the benchmarks: the command, timing, inputs and the report."""

import argparse
import contextlib
import os
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


def print_rows(rows: Sequence[Tuple[str, str]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
