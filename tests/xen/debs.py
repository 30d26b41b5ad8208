"""Debian bookworm packages of one architecture, downloaded and unpacked for the harness.

apt runs with its own configuration, package lists and cache under the harness cache folder
(`APT_CONFIG`, `Dir::State::status=/dev/null`): the host's apt state is never read or touched.
Each package is unpacked into its own folder, so the dom0 builder can take files from named
packages; the kernel package is trimmed to the image and the modules the tests load.
Once a set of packages is unpacked, later runs reuse it without any network access.
"""

import contextlib
import fcntl
import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Dict, Iterator, List, Optional, Set, Tuple

from . import elf

DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}
TRIPLET = {"x86_64": "x86_64-linux-gnu", "arm64": "aarch64-linux-gnu"}
MIRRORS = (
    "http://deb.debian.org/debian bookworm main",
    "http://deb.debian.org/debian bookworm-updates main",
    "http://deb.debian.org/debian-security bookworm-security main",
)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
XEN_VERSION = "4.17"

# Packages taken as a whole; their library dependencies are added automatically.
PACKAGES = (
    "xen-utils-4.17", "xen-utils-common", "xenstore-utils",
    "busybox-static", "bash", "coreutils", "util-linux", "mount", "fdisk",
    "e2fsprogs", "dosfstools", "mtools", "openssl",
    "zstd",  # prebuilt disks (Python 3.11 has no zstd module)
    "python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
    # the guests' networks: nft, dnsmasq (the NAT network's DHCP server), dhcp_release
    "nftables", "dnsmasq-base", "dnsmasq-utils",
)

DOM0_MODULES = (
    "xen-evtchn", "xen-privcmd", "xenfs", "xen-gntdev", "xen-gntalloc",
    "xen-blkback", "xen-netback", "loop", "llc", "stp", "bridge",
    # nftables with NAT, masquerading and fib lookups (xenguest-manager's table); libcrc32c,
    # which nf_tables needs, needs a crc32c implementation loaded first (a soft dependency)
    "crc32c_generic", "nf_tables", "nft_chain_nat", "nft_nat", "nft_masq", "nft_fib_inet",
)
GUEST_MODULES = (
    "crc32c_generic", "crc16", "mbcache", "jbd2", "ext4", "xen-blkfront", "xen-netfront",
)
# Bump when the layout of the unpacked cache changes.
CACHE_FORMAT = 1
MERGED_DIRS = ("bin", "sbin", "lib", "lib64")


class HarnessError(Exception):
    """The harness could not prepare or run the emulated machine."""


def cache_root() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    path = os.path.join(base, "xenguest-tests")
    os.makedirs(path, exist_ok=True)
    return path


@contextlib.contextmanager
def locked(path: str) -> Iterator[None]:
    """Hold an exclusive lock on PATH (a lock file) for the duration of the block."""
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def module_key(name: str) -> str:
    return name.replace("-", "_")


def canonical(path: str) -> str:
    """The merged-/usr form of an absolute path (/bin/sh -> /usr/bin/sh)."""
    path = os.path.normpath(path)
    for top in MERGED_DIRS:
        if path == "/" + top or path.startswith("/" + top + "/"):
            return "/usr" + path
    return path


def _variants(path: str) -> List[str]:
    """Where a canonical path may be stored in an unmerged package tree."""
    found = [path]
    for top in MERGED_DIRS:
        prefix = "/usr/" + top
        if path == prefix or path.startswith(prefix + "/"):
            found.append(path[4:])
    return found


class DebianTree:
    """The unpacked packages of one architecture."""

    def __init__(self, arch: str, folder: str, manifest: Dict[str, Any]) -> None:
        self.arch = arch
        self.folder = folder
        self.manifest = manifest
        self.kernel_version = str(manifest["kernel_version"])
        self.packages = list(manifest["packages"])
        self.modules = dict(manifest["modules"])
        self.builtin = set(manifest["builtin"])
        self._libs: Optional[Dict[str, str]] = None

    @property
    def key(self) -> str:
        """A digest of the exact package files: changes whenever any package changes."""
        text = json.dumps(self.manifest["debs"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def package_dir(self, package: str) -> str:
        return os.path.join(self.folder, "pkgs", package)

    def locate(self, path: str, package: Optional[str] = None) -> Optional[str]:
        """Host path of canonical PATH in PACKAGE (or any package), following no link."""
        for pkg in [package] if package else self.packages:
            for variant in _variants(path):
                host = self.package_dir(pkg) + variant
                if os.path.lexists(host):
                    return host
        return None

    def files(self, package: str, under: str = "/") -> List[str]:
        """Canonical paths of the files and links PACKAGE ships below canonical UNDER."""
        root = self.package_dir(package)
        found = []
        for dirpath, dirnames, filenames in os.walk(root):
            links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
            for name in filenames + links:
                path = canonical("/" + os.path.relpath(os.path.join(dirpath, name), root))
                if path == under or path.startswith(under.rstrip("/") + "/"):
                    found.append(path)
        return sorted(found)

    def library(self, soname: str) -> Optional[str]:
        """Canonical path of the shared library SONAME, from any unpacked package."""
        if self._libs is None:
            self._libs = {}
            dirs = ["/usr/lib/" + TRIPLET[self.arch], "/usr/lib", "/usr/lib64"]
            for pkg in self.packages:
                for folder in dirs:
                    for variant in _variants(folder):
                        host = self.package_dir(pkg) + variant
                        if os.path.isdir(host):
                            for name in os.listdir(host):
                                self._libs.setdefault(name, folder + "/" + name)
        return self._libs.get(soname)

    def kernel_image(self) -> str:
        host = self.locate("/boot/vmlinuz-" + self.kernel_version)
        if host is None:
            raise HarnessError("kernel image missing from the unpacked linux-image package")
        return host

    def xen_image(self) -> str:
        """Host path of the hypervisor as QEMU loads it (uncompressed on x86)."""
        name = "xen-%s-%s" % (XEN_VERSION, DEBIAN_ARCH[self.arch])
        path = os.path.join(self.folder, name)
        if not os.path.exists(path):
            raise HarnessError("hypervisor image %s missing" % path)
        return path

    def module_closure(self, names: List[str]) -> List[str]:
        """Canonical paths of the modules NAMES and their dependencies, load order first."""
        ordered: List[str] = []
        seen: Set[str] = set()

        def visit(name: str) -> None:
            key = module_key(name)
            if key in seen:
                return
            seen.add(key)
            if key not in self.modules:
                if key in self.builtin:
                    return
                raise HarnessError("kernel module %s not in %s" % (name, self.kernel_version))
            for dep in self.modules[key]["depends"]:
                visit(dep)
            ordered.append(self.modules[key]["path"])

        for name in names:
            visit(name)
        return ordered


class Apt:
    """apt-get/apt-cache with a private configuration for one architecture."""

    def __init__(self, arch: str, folder: str) -> None:
        self.arch = DEBIAN_ARCH[arch]
        self.folder = folder
        for sub in ("lists/partial", "cache/archives/partial", "etc/parts", "etc/sources.d"):
            os.makedirs(os.path.join(folder, sub), exist_ok=True)
        sources = "".join("deb [signed-by=%s] %s\n" % (KEYRING, line) for line in MIRRORS)
        with open(os.path.join(folder, "sources.list"), "w") as handle:
            handle.write(sources)
        settings = {
            "APT::Architecture": self.arch,
            "Dir::State::Lists": os.path.join(folder, "lists"),
            "Dir::State::status": "/dev/null",
            "Dir::Cache": os.path.join(folder, "cache"),
            "Dir::Etc::sourcelist": os.path.join(folder, "sources.list"),
            "Dir::Etc::sourceparts": os.path.join(folder, "etc/sources.d"),
            "Dir::Etc::parts": os.path.join(folder, "etc/parts"),
            "Dir::Etc::main": "/dev/null",
            "Dir::Etc::preferences": "/dev/null",
            "Dir::Etc::preferencesparts": os.path.join(folder, "etc/parts"),
            "Dir::Cache::pkgcache": "",
            "Dir::Cache::srcpkgcache": "",
            "Acquire::Languages": "none",
        }
        if os.geteuid() == 0:
            settings["APT::Sandbox::User"] = "root"
        settings.update(_host_proxies())
        lines = ['%s "%s";\n' % item for item in settings.items()]
        lines.append('APT::Architectures { "%s"; };\n' % self.arch)
        self.config = os.path.join(folder, "apt.conf")
        with open(self.config, "w") as handle:
            handle.write("".join(lines))

    def run(self, args: List[str], cwd: Optional[str] = None) -> str:
        env = dict(os.environ, APT_CONFIG=self.config, LC_ALL="C", DEBIAN_FRONTEND="noninteractive")
        proc = subprocess.run(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, universal_newlines=True)
        if proc.returncode != 0:
            raise HarnessError("%s failed (rc %d): %s" % (" ".join(args[:2]), proc.returncode,
                                                          proc.stderr.strip()[-2000:]))
        return proc.stdout

    def update(self) -> None:
        self.run(["apt-get", "-q", "update"])

    def show(self, names: List[str]) -> Dict[str, Dict[str, str]]:
        """Candidate records of NAMES (unknown and purely virtual names are left out)."""
        if not names:
            return {}
        records = {}
        text = self.run(["apt-cache", "show", "--no-all-versions"] + sorted(names))
        for block in text.split("\n\n"):
            fields = {}
            for line in block.splitlines():
                match = re.match(r"^([A-Za-z0-9-]+): ?(.*)$", line)
                if match:
                    fields[match.group(1)] = match.group(2)
            if "Package" in fields:
                records[fields["Package"]] = fields
        return records

    def download(self, specs: List[str], folder: str) -> None:
        self.run(["apt-get", "-q", "download"] + specs, cwd=folder)


def _host_proxies() -> Dict[str, str]:
    """The host's apt proxy settings (the only host apt settings used; read, never changed)."""
    keys = {"HTTP": "Acquire::http::Proxy", "HTTPS": "Acquire::https::Proxy"}
    args = ["apt-config", "shell"]
    for var, key in keys.items():
        args += [var, key]
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          universal_newlines=True)
    found = {}
    for line in proc.stdout.splitlines():
        var, _sep, value = line.partition("=")
        value = value.strip("'")
        if var in keys and value:
            found[keys[var]] = value
    return found


def _dependencies(record: Dict[str, str]) -> List[List[str]]:
    groups = []
    for field in ("Pre-Depends", "Depends"):
        for group in filter(None, (g.strip() for g in record.get(field, "").split(","))):
            groups.append([re.split(r"[\s(:]", alt.strip())[0] for alt in group.split("|")])
    return groups


def resolve(apt: Apt) -> Dict[str, Dict[str, str]]:
    """Records of PACKAGES, the kernel, the hypervisor and their library closure."""
    arch = apt.arch
    meta = apt.show(["linux-image-" + arch])
    if not meta:
        raise HarnessError("no linux-image-%s package in Debian bookworm" % arch)
    kernel = _dependencies(meta["linux-image-" + arch])[0][0]
    wanted = list(PACKAGES) + [kernel, "xen-hypervisor-%s-%s" % (XEN_VERSION, arch)]
    records = apt.show(wanted)
    missing = sorted(set(wanted) - set(records))
    if missing:
        raise HarnessError("Debian bookworm/%s lacks packages: %s" % (arch, ", ".join(missing)))
    frontier = list(records.values())
    while frontier:
        candidates = set()
        for record in frontier:
            for group in _dependencies(record):
                if not any(name in records for name in group):
                    candidates.update(group)
        found = apt.show(sorted(candidates))
        frontier = []
        for record in found.values():
            if record.get("Section") in ("libs", "oldlibs") and record["Package"] not in records:
                records[record["Package"]] = record
                frontier.append(record)
    records[kernel]["X-Kernel"] = "yes"
    return records


def deb_name(record: Dict[str, str]) -> str:
    version = record["Version"].replace(":", "%3a")
    return "%s_%s_%s.deb" % (record["Package"], version, record["Architecture"])


def _unpack(deb: str, dest: str) -> None:
    proc = subprocess.run(["dpkg-deb", "-x", deb, dest], stderr=subprocess.PIPE,
                          universal_newlines=True)
    if proc.returncode != 0:
        raise HarnessError("dpkg-deb -x %s failed: %s" % (deb, proc.stderr.strip()))


def _trim_kernel(pkg_dir: str) -> Tuple[str, Dict[str, Dict[str, Any]], List[str]]:
    """Keep the kernel image and the wanted modules; return (version, modules, builtin)."""
    base = os.path.join(pkg_dir, "lib", "modules")
    versions = os.listdir(base)
    if len(versions) != 1:
        raise HarnessError("expected one kernel version in %s, found %s" % (base, versions))
    version = versions[0]
    kdir = os.path.join(base, version)
    index: Dict[str, Dict[str, Any]] = {}
    for dirpath, _dirs, files in os.walk(os.path.join(kdir, "kernel")):
        for name in files:
            if name.endswith(".ko"):
                host = os.path.join(dirpath, name)
                info = elf.module_info(host)
                deps = [d for d in ",".join(info.get("depends", [])).split(",") if d]
                index[module_key(name[:-3])] = {
                    "path": canonical("/" + os.path.relpath(host, pkg_dir)),
                    "depends": [module_key(d) for d in deps], "host": host}
    builtin = []
    with open(os.path.join(kdir, "modules.builtin")) as handle:
        for line in handle:
            builtin.append(module_key(os.path.basename(line.strip())[:-3]))
    keep: Set[str] = set()
    todo = [module_key(m) for m in DOM0_MODULES + GUEST_MODULES]
    while todo:
        key = todo.pop()
        if key in index and key not in keep:
            keep.add(key)
            todo.extend(index[key]["depends"])
    for key, entry in index.items():
        if key not in keep:
            os.unlink(str(entry["host"]))
    for top in os.listdir(pkg_dir):
        if top not in ("boot", "lib"):
            shutil.rmtree(os.path.join(pkg_dir, top))
    for name in os.listdir(os.path.join(pkg_dir, "boot")):
        if not name.startswith("vmlinuz-"):
            os.unlink(os.path.join(pkg_dir, "boot", name))
    kept = {k: {"path": v["path"], "depends": v["depends"]} for k, v in index.items() if k in keep}
    return version, kept, builtin


def _request_key() -> str:
    text = json.dumps([CACHE_FORMAT, PACKAGES, DOM0_MODULES, GUEST_MODULES, XEN_VERSION])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fetch(arch: str, log: Optional[List[str]] = None) -> DebianTree:
    """Download (once) and unpack the Debian packages of ARCH ("x86_64" or "arm64")."""
    if arch not in DEBIAN_ARCH:
        raise HarnessError("unknown architecture %r (use x86_64 or arm64)" % arch)
    folder = os.path.join(cache_root(), "debian-" + DEBIAN_ARCH[arch])
    os.makedirs(folder, exist_ok=True)
    manifest_path = os.path.join(folder, "manifest.json")
    with locked(os.path.join(folder, ".lock")):
        if os.path.exists(manifest_path):
            with open(manifest_path) as handle:
                manifest = json.load(handle)
            if manifest.get("request") == _request_key() and os.path.isdir(
                    os.path.join(folder, "pkgs")):
                return DebianTree(arch, folder, manifest)
            os.unlink(manifest_path)
        apt = Apt(arch, os.path.join(folder, "apt"))
        apt.update()
        records = resolve(apt)
        debs_dir = os.path.join(folder, "debs")
        os.makedirs(debs_dir, exist_ok=True)
        names = {name: deb_name(rec) for name, rec in records.items()}
        for old in os.listdir(debs_dir):
            if old not in names.values():
                os.unlink(os.path.join(debs_dir, old))
        missing = [n for n, f in names.items() if not os.path.exists(os.path.join(debs_dir, f))]
        if missing:
            apt.download(["%s=%s" % (n, records[n]["Version"]) for n in sorted(missing)], debs_dir)
        for name, filename in names.items():
            if not os.path.exists(os.path.join(debs_dir, filename)):
                raise HarnessError("apt-get download did not produce %s" % filename)
        if log is not None:
            log.append("downloaded %d packages for %s" % (len(missing), arch))
        pkgs_dir = os.path.join(folder, "pkgs")
        shutil.rmtree(pkgs_dir, ignore_errors=True)
        os.makedirs(pkgs_dir)
        kernel_version = ""
        modules: Dict[str, Dict[str, Any]] = {}
        builtin: List[str] = []
        for name, filename in sorted(names.items()):
            dest = os.path.join(pkgs_dir, name)
            _unpack(os.path.join(debs_dir, filename), dest)
            if records[name].get("X-Kernel"):
                kernel_version, modules, builtin = _trim_kernel(dest)
        xen = "xen-%s-%s" % (XEN_VERSION, DEBIAN_ARCH[arch])
        xen_src = os.path.join(pkgs_dir, "xen-hypervisor-%s-%s" % (XEN_VERSION, DEBIAN_ARCH[arch]),
                               "boot", xen)
        _install_xen(xen_src, os.path.join(folder, xen))
        manifest = {"request": _request_key(), "debs": sorted(names.values()),
                    "packages": sorted(names), "kernel_version": kernel_version,
                    "modules": modules, "builtin": builtin}
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False) as tmp:
            json.dump(manifest, tmp, indent=1, sort_keys=True)
        os.replace(tmp.name, manifest_path)
        return DebianTree(arch, folder, manifest)


def _install_xen(source: str, dest: str) -> None:
    """Copy the hypervisor; x86's is gzip'd, and QEMU's multiboot loader needs the plain ELF."""
    if os.path.exists(source + ".gz"):
        with gzip.open(source + ".gz", "rb") as src, open(dest, "wb") as out:
            shutil.copyfileobj(src, out)
    elif os.path.exists(source):
        shutil.copyfile(source, dest)
    else:
        raise HarnessError("hypervisor %s(.gz) missing from its package" % source)
