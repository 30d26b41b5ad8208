"""The real xl parser for tests: libxlutil through ctypes, and ``xl -N create`` dry runs.

What ``xl -N create -q CFG`` needs on a machine without Xen (found by experiment, Debian
xen-utils-4.17):
- a libxl context first, which needs libxenctrl and libxenstore handles: the LD_PRELOAD stub
  tests/support/xlstub.c makes those calls succeed (built once into tests/.cache/, keyed by
  the source's hash);
- /etc/xen/xl.conf is read if present; nothing else is opened. In a dry run xl does not open
  kernel, ramdisk or device_tree, so ``kernel = "files/kernel"`` (relative, existing or not)
  works from any working directory and appears as is in the JSON;
- the config must name the domain (``name``) and a ``kernel`` (or ``bootloader``), otherwise
  xl fails with "Domain name must be specified." / "Neither kernel nor bootloader specified";
- the domain JSON is printed on stdout; warnings and errors go to stderr (many wrong values only
  warn and still exit 0, so a config passes only with exit 0 AND empty stderr).

If xl, libxlutil or gcc is missing the tests are skipped, and fail when CI is set.
"""

import ctypes
import ctypes.util
import glob
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from typing import Dict, Iterable, List, Optional, Tuple, Union

import pytest

XL = "/usr/lib/xen-4.17/bin/xl"
SETUP_HINT = "run tools/setup-test-env to install xen-utils-4.17 and gcc"
HERE = os.path.dirname(os.path.abspath(__file__))
STUB_SOURCE = os.path.join(HERE, "support", "xlstub.c")
CACHE = os.path.join(HERE, ".cache")

Real = Union[str, List["Real"]]   # what libxlu stores: every scalar is text


def unavailable(what: str) -> None:
    """Skip the calling test (fail it when CI is set): *what* is missing."""
    message = f"{what}; {SETUP_HINT}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


# --- libxlutil via ctypes ---------------------------------------------------------------

class _Libs:
    def __init__(self, xlu: ctypes.CDLL, libc: ctypes.CDLL) -> None:
        self.xlu, self.libc = xlu, libc
        vp, cp, ip = ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int
        for name, res, args in (
            ("xlu_cfg_init", vp, [vp, cp]),
            ("xlu_cfg_readdata", ip, [vp, cp, ip]),
            ("xlu_cfg_destroy", None, [vp]),
            ("xlu_cfg_get_string", ip, [vp, cp, ctypes.POINTER(cp), ip]),
            ("xlu_cfg_get_list", ip, [vp, cp, ctypes.POINTER(vp), ctypes.POINTER(ip), ip]),
            ("xlu_cfg_get_listitem", cp, [vp, ip]),
            ("xlu_cfg_get_listitem2", vp, [vp, ip]),
            ("xlu_cfg_value_type", ip, [vp]),
            ("xlu_cfg_value_get_list", ip, [vp, vp, ctypes.POINTER(vp), ip]),
        ):
            fn = getattr(xlu, name)
            fn.restype, fn.argtypes = res, args
        for name, res, args in (("tmpfile", vp, []), ("fclose", ip, [vp]), ("fflush", ip, [vp]),
                                ("rewind", None, [vp]),
                                ("fread", ctypes.c_size_t, [vp, ctypes.c_size_t,
                                                            ctypes.c_size_t, vp])):
            fn = getattr(libc, name)
            fn.restype, fn.argtypes = res, args


_libs: Optional[_Libs] = None


def _load() -> Optional[_Libs]:
    global _libs
    if _libs is None:
        paths = glob.glob("/usr/lib/*/libxlutil.so.4.17*") + glob.glob("/usr/lib/libxlutil.so.4.17")
        if not paths:
            return None
        _libs = _Libs(ctypes.CDLL(sorted(paths)[0]), ctypes.CDLL(ctypes.util.find_library("c")))
    return _libs


def have_libxlutil() -> bool:
    return _load() is not None


def _list_items(libs: _Libs, cfg: int, lst: int) -> List[Real]:
    items: List[Real] = []
    index = 0
    while True:
        item = libs.xlu.xlu_cfg_get_listitem2(lst, index)
        if not item:
            return items
        if libs.xlu.xlu_cfg_value_type(item) == 0:          # XLU_STRING
            items.append(libs.xlu.xlu_cfg_get_listitem(lst, index).decode("utf-8"))
        else:
            inner = ctypes.c_void_p()
            libs.xlu.xlu_cfg_value_get_list(cfg, item, ctypes.byref(inner), 1)
            items.append(_list_items(libs, cfg, inner.value))
        index += 1


def libxlutil_read(text: str, keys: Iterable[str] = (),
                   source: str = "guest.cfg") -> Tuple[bool, str, Dict[str, Optional[Real]]]:
    """Parse *text* with the real libxlutil: (ok, messages, {key: value or None}).

    Values are read back with xlu_cfg_get_string, or xlu_cfg_get_list and its items; every
    scalar is text there (numbers too).
    """
    libs = _load()
    if libs is None:
        unavailable("libxlutil.so.4.17 is not installed")
    data = text.encode("utf-8")
    report = libs.libc.tmpfile()
    cfg = libs.xlu.xlu_cfg_init(report, source.encode())
    try:
        ok = libs.xlu.xlu_cfg_readdata(cfg, data, len(data)) == 0
        values: Dict[str, Optional[Real]] = {}
        for key in keys:
            string = ctypes.c_char_p()
            lst, count = ctypes.c_void_p(), ctypes.c_int()
            if libs.xlu.xlu_cfg_get_string(cfg, key.encode(), ctypes.byref(string), 1) == 0:
                values[key] = string.value.decode("utf-8")
            elif libs.xlu.xlu_cfg_get_list(cfg, key.encode(), ctypes.byref(lst),
                                           ctypes.byref(count), 1) == 0:
                values[key] = _list_items(libs, cfg, lst.value)
                assert len(values[key]) == count.value
            else:
                values[key] = None
        libs.libc.fflush(report)
        libs.libc.rewind(report)
        chunks = []
        buf = ctypes.create_string_buffer(4096)
        while True:
            got = libs.libc.fread(buf, 1, len(buf), report)
            if not got:
                break
            chunks.append(buf.raw[:got])
        return ok, b"".join(chunks).decode("utf-8", "replace"), values
    finally:
        libs.xlu.xlu_cfg_destroy(cfg)
        libs.libc.fclose(report)


def libxlutil_parse(text: str) -> Tuple[bool, str]:
    """(ok, messages) of the real libxlutil parsing *text*."""
    ok, messages, _ = libxlutil_read(text)
    return ok, messages


# --- xl -N create with the stub ---------------------------------------------------------

def stub_library() -> str:
    """Path of the LD_PRELOAD stub, compiled once per source version into tests/.cache/."""
    with open(STUB_SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:16]
    target = os.path.join(CACHE, f"xlstub-{digest}.so")
    if os.path.exists(target):
        return target
    gcc = shutil.which("gcc")
    if gcc is None:
        unavailable("gcc is needed to build tests/support/xlstub.c")
    os.makedirs(CACHE, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=CACHE)
    os.close(fd)
    try:
        subprocess.run([gcc, "-shared", "-fPIC", "-O2", "-Wall", "-o", tmp, STUB_SOURCE],
                       check=True, capture_output=True, text=True)
        os.replace(tmp, target)          # atomic: parallel test runs may race here
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def have_xl() -> bool:
    return os.access(XL, os.X_OK)


def xl_dry_run(cfg_path: str) -> Tuple[int, Optional[dict], str]:
    """Run ``xl -N create -q CFG``: (exit status, domain JSON as a dict or None, stderr)."""
    if not have_xl():
        unavailable(f"{XL} is not installed")
    env = dict(os.environ, LD_PRELOAD=stub_library())
    proc = subprocess.run([XL, "-N", "create", "-q", cfg_path], env=env, capture_output=True,
                          text=True, timeout=60, cwd=os.path.dirname(os.path.abspath(cfg_path)))
    try:
        domain = json.loads(proc.stdout) if proc.stdout.strip() else None
    except ValueError:
        domain = None
    return proc.returncode, domain, proc.stderr


@pytest.fixture(scope="session")
def real_libxlutil():
    """libxlutil_read, or skip (fail under CI) when libxlutil is missing."""
    if not have_libxlutil():
        unavailable("libxlutil.so.4.17 is not installed")
    return libxlutil_read


@pytest.fixture(scope="session")
def real_xl():
    """xl_dry_run, or skip (fail under CI) when xl or gcc is missing."""
    if not have_xl():
        unavailable(f"{XL} is not installed")
    stub_library()
    return xl_dry_run
