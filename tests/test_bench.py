"""The benchmarks still run and report every figure (tiny sizes; nothing is timed here)."""

import os
import subprocess
import sys

import pytest

BENCH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")


@pytest.mark.parametrize("script, args, rows", [
    ("bench_mkimage.py", ["--size-mib", "4"],
     ["cp of the same bytes", "SHA-256 of the same bytes", "create / cp",
      "create / max(cp, SHA-256)", "create peak RSS", "update --xen-memory", "python3 -c pass",
      "update / naive"]),
    ("bench_verify.py", ["--size-mib", "4"], ["sha256sum", "check --verify / sha256sum"]),
    ("bench_manager.py", ["--files", "60", "--size-mib", "2"],
     ["xenguest-manager create", "tar -xf + mke2fs -d", "create / baseline"]),
    ("bench_prebuilt.py", ["--files", "60", "--size-mib", "4"],
     ["create, prebuilt disk", "cp --sparse=always + sync", "create, disk built (debugfs)",
      "prebuilt / (cp + sync)", "built / prebuilt"]),
])
def test_benchmark_reports_its_figures(script, args, rows, tmp_path):
    proc = subprocess.run([sys.executable, os.path.join(BENCH, script), "--runs", "1",
                           "--dir", str(tmp_path)] + args,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr
    printed = [line.split("  ")[0] for line in proc.stdout.splitlines()]
    for row in rows:
        assert row in printed, proc.stdout
    assert os.listdir(str(tmp_path)) == []  # the work folder is removed
