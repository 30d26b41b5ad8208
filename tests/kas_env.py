"""The real kas (PyPI ``kas==5.5``), offline: stand-in upstream repositories and bitbake.

The kas files name the real upstream URLs.  The tests redirect them with
``KAS_PREMIRRORS`` to small local bare git repositories made here, one per
upstream repository, with the same repository ids, branches, layer paths and
collection names as upstream and, in each ``conf/layer.conf``, the real
``LAYERVERSION``/``LAYERDEPENDS``/``LAYERSERIES_COMPAT`` of that layer in that
release (read from the upstream branches; see :data:`RELEASES`).  The stand-in
OE-core has an ``oe-init-build-env`` that finds bitbake where the real one looks
for it, and a small ``conf/bitbake.conf`` with OE-core's include order and the
names the checks read (machine, distro, init manager, multiconfig files).

The stand-in ``bitbake`` that kas runs (``kas build``) is :func:`bitbake_main`:
it parses the generated build folder with the real BitBake parser
(``bb.cookerdata``, from the PyPI ``bitbake-setup`` wheel) for every
multiconfig, checks the layers with BitBake's own ``handleCollections``
(LAYERDEPENDS with versions) and its LAYERSERIES_COMPAT check, finds the
recipes with BitBake's ``CookerCollectFiles``, and checks what a build would
meet first: every target exists in its multiconfig, the target image's
REQUIRED_DISTRO_FEATURES, the classes and packages local.conf adds to it, its
test suites, and the guests ``XENGUEST_HOST_GUESTS`` bundles (resolved by the
layer's own ``xenguest.bitbake.host``).  It writes what it saw to
``standin-bitbake.json`` in the build folder and exits 1 on any error.

The stand-in repositories cannot hold the pinned upstream commits (a git commit
ID is the hash of its content and history: it cannot be forced), so a checkout
with the lock files in force fails, kas looking for the pinned commit.  The
tests run ``kas build/checkout/dump --update`` (branch heads, lock files
ignored) and check the lock files themselves through kas's Config API.  (A
test-only override file cannot replace the pins either: kas wants every file
of a chain in the same repository, and the test must not write into this one.)
"""

import json
import os
import re
import subprocess
import sys
import textwrap
import types
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
KAS_DIR = os.path.join(ROOT, "kas")
REPORT = "standin-bitbake.json"
HOSTS = ("git.openembedded.org", "git.yoctoproject.org")
# Environment variables that would change what kas generates or what bitbake sees.
BUILD_ENV = ("SSTATE_DIR", "SSTATE_MIRRORS", "BB_HASHSERVE_DB_DIR", "BB_HASHSERVE",
             "BB_HASHSERVE_UPSTREAM", "DL_DIR", "TMPDIR", "BB_ENV_PASSTHROUGH_ADDITIONS",
             "BBPATH", "BUILDDIR", "BBSERVER")
# Variables of the configurations and of the target recipes in the report.
CONFIG_VARS = ("MACHINE", "DISTRO", "DISTRO_FEATURES", "INIT_MANAGER", "TMPDIR",
               "DEPLOY_DIR_IMAGE", "BBMULTICONFIG", "LAYERSERIES_CORENAMES",
               "BB_SIGNATURE_HANDLER", "BB_HASHSERVE", "SSTATE_MIRRORS", "SERIAL_CONSOLES")
RECIPE_VARS = ("IMAGE_INSTALL", "IMAGE_CLASSES", "XENGUEST_HOST_GUESTS", "QB_MEM_VALUE",
               "QB_XEN_CMDLINE_EXTRA", "QB_SLIRP_OPT", "IMAGE_ROOTFS_EXTRA_SPACE",
               "TESTIMAGE_AUTO",
               "TEST_SUITES", "TEST_RUNQEMUPARAMS", "QEMU_USE_KVM", "EXTRA_IMAGE_FEATURES")


@dataclass
class Layer:
    """One upstream layer: its path in the repository and its layer.conf facts."""

    path: str
    collection: str
    version: str
    depends: str
    compat: str
    extra: str = ""


@dataclass
class Upstream:
    """One upstream repository, as the kas files name it."""

    url: str
    branch: str
    layers: List[Layer]
    files: Dict[str, str] = field(default_factory=dict)


def _oe_layers(compat: str) -> List[Layer]:
    return [Layer("meta-oe", "openembedded-layer", "1", "core", compat),
            Layer("meta-python", "meta-python", "1", "core (>= 12) openembedded-layer", compat),
            Layer("meta-networking", "networking-layer", "1",
                  "core meta-python openembedded-layer", compat),
            Layer("meta-filesystems", "filesystems-layer", "1",
                  "core openembedded-layer networking-layer", compat)]


def _virt(branch: str, compat: str, required: str, note: str) -> Upstream:
    layer = Layer("", "virtualization-layer", "1",
                  "core openembedded-layer networking-layer filesystems-layer meta-python",
                  compat, 'require conf/distro/include/virt_security_flags.inc\n'
                  'INHERIT += "sanity-meta-virt"\n')
    return Upstream("https://git.yoctoproject.org/meta-virtualization", branch, [layer], {
        "conf/distro/include/virt_security_flags.inc": "# stand-in\n",
        "classes/sanity-meta-virt.bbclass": "# stand-in\n",
        "recipes-extended/images/xen-image-minimal.bb":
            f'# stand-in: {note}\nREQUIRED_DISTRO_FEATURES ?= "{required}"\n'})


def _core(release: str, init_manager: str) -> Tuple[Layer, Dict[str, str]]:
    layer = Layer("meta", "core", "15", "", release,
                  f'LAYERSERIES_CORENAMES = "{release}"\naddpylib ${{LAYERDIR}}/lib oe\n')
    files = {
        "meta/conf/bitbake.conf": BITBAKE_CONF,
        "meta/conf/machine/qemuarm64.conf": MACHINE_CONF.format(
            arch="aarch64", image="Image", consoles="115200;ttyAMA0 115200;hvc0"),
        "meta/conf/machine/qemux86-64.conf": MACHINE_CONF.format(
            arch="x86_64", image="bzImage", consoles="115200;ttyS0 115200;ttyS1"),
        "meta/conf/distro/defaultsetup.conf":
            f'INIT_MANAGER ??= "{init_manager}"\n'
            'require conf/distro/include/init-manager-${INIT_MANAGER}.inc\n',
        "meta/conf/distro/include/init-manager-systemd.inc":
            'DISTRO_FEATURES:append = " systemd usrmerge"\n',
        "meta/conf/distro/include/init-manager-sysvinit.inc":
            'DISTRO_FEATURES:append = " sysvinit"\n',
        "meta/conf/distro/include/init-manager-none.inc": "# no init manager features\n",
        "meta/classes-global/base.bbclass": "# stand-in\n",
        "meta/lib/oe/__init__.py": 'BBIMPORTS = ["sstatesig"]\n',
        "meta/lib/oe/sstatesig.py": SSTATESIG,
        "meta/classes-recipe/testimage.bbclass": "# stand-in\n",
        "meta/lib/oeqa/runtime/cases/ping.py": "# stand-in\n",
        "meta/lib/oeqa/runtime/cases/ssh.py": "# stand-in\n",
        "oe-init-build-env": INIT_BUILD_ENV,
    }
    return layer, files


def _poky_distro(release: str, features: str) -> Dict[str, str]:
    return {
        "meta-poky/conf/distro/poky.conf": textwrap.dedent(f"""\
            DISTRO = "poky"
            DISTRO_CODENAME = "{release}"
            POKY_DEFAULT_DISTRO_FEATURES = "{features}"
            DISTRO_FEATURES ?= "${{DISTRO_FEATURES_DEFAULT}} ${{POKY_DEFAULT_DISTRO_FEATURES}}"
            BB_SIGNATURE_HANDLER ?= "OEEquivHash"
            BB_HASHSERVE ??= "auto"
            POKY_INIT_MANAGER = "sysvinit"
            INIT_MANAGER ?= "${{POKY_INIT_MANAGER}}"
            """),
        "meta-poky/conf/distro/poky-altcfg.conf": textwrap.dedent("""\
            require conf/distro/poky.conf
            DISTRO = "poky-altcfg"
            DISTROOVERRIDES = "poky:poky-altcfg"
            POKY_INIT_MANAGER:poky-altcfg = "systemd"
            """),
    }


def _wrynose() -> Dict[str, Upstream]:
    core, core_files = _core("wrynose", "systemd")
    oe_compat = "whinlatter wrynose"
    return {
        "bitbake": Upstream("https://git.openembedded.org/bitbake", "2.18", [],
                            {"bin/bitbake": "2.18"}),
        "openembedded-core": Upstream("https://git.openembedded.org/openembedded-core",
                                      "wrynose", [core], core_files),
        "meta-yocto": Upstream("https://git.yoctoproject.org/meta-yocto", "wrynose", [
            Layer("meta-poky", "yocto", "3", "core", "wrynose"),
            Layer("meta-yocto-bsp", "yoctobsp", "4", "", "wrynose")],
            _poky_distro("wrynose", "")),
        "meta-openembedded": Upstream("https://git.openembedded.org/meta-openembedded",
                                      "wrynose", _oe_layers(oe_compat)),
        "meta-virtualization": _virt("wrynose", "wrynose", "xen systemd",
                                     "the recipe's own REQUIRED_DISTRO_FEATURES"),
    }


def _scarthgap() -> Dict[str, Upstream]:
    core, core_files = _core("scarthgap", "none")
    files = dict(core_files)
    files["bitbake/bin/bitbake"] = "2.8"  # poky scarthgap's bitbake
    files.update(_poky_distro("scarthgap", "opengl ptest multiarch wayland vulkan"))
    return {
        "poky": Upstream("https://git.yoctoproject.org/poky", "scarthgap", [
            core, Layer("meta-poky", "yocto", "3", "core", "scarthgap"),
            Layer("meta-yocto-bsp", "yoctobsp", "4", "", "scarthgap")], files),
        "meta-openembedded": Upstream("https://git.openembedded.org/meta-openembedded",
                                      "scarthgap", _oe_layers("scarthgap")),
        "meta-virtualization": _virt("scarthgap", "nanbield scarthgap", "xen",
                                     "scarthgap's recipe checks xen in do_check_xen_state"),
    }


BITBAKE_CONF = """\
# Stand-in for OE-core's conf/bitbake.conf: OE-core's include order and the
# variables the kas tests read, with OE-core's names and meanings.
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False), d)[0] or 'defaultpkgname'}"
TMPDIR ?= "${TOPDIR}/tmp"
DEPLOY_DIR ?= "${TMPDIR}/deploy"
DEPLOY_DIR_IMAGE ?= "${DEPLOY_DIR}/images/${MACHINE}"
IMAGE_NAME_SUFFIX ??= ".rootfs"
PERSISTENT_DIR = "${TOPDIR}/cache"
CACHE = "${TMPDIR}/cache"
prefix = "/usr"
datadir = "${prefix}/share"
DISTRO_FEATURES_DEFAULT ?= "acl ipv4 ipv6 xattr"
OVERRIDES = "pn-${PN}:${MACHINEOVERRIDES}:${DISTROOVERRIDES}:forcevariable"
DISTROOVERRIDES ?= "${@d.getVar('DISTRO') or ''}"
MACHINEOVERRIDES ?= "${MACHINE}"
include conf/local.conf
include conf/multiconfig/${BB_CURRENT_MC}.conf
require conf/machine/${MACHINE}.conf
require conf/distro/${DISTRO}.conf
require conf/distro/defaultsetup.conf
"""

SSTATESIG = """\
# Stand-in for OE-core's lib/oe/sstatesig.py: its signature generator, by name.
import bb.siggen


class SignatureGeneratorOEEquivHash(bb.siggen.SignatureGeneratorBasicHash):
    name = "OEEquivHash"


bb.siggen.SignatureGeneratorOEEquivHash = SignatureGeneratorOEEquivHash
"""

MACHINE_CONF = """\
# Stand-in machine: the names the kas tests read.
MACHINEOVERRIDES =. "qemuall:"
TARGET_ARCH = "{arch}"
KERNEL_IMAGETYPE = "{image}"
SERIAL_CONSOLES ?= "{consoles}"
"""

INIT_BUILD_ENV = """\
# Stand-in for OE-core's oe-init-build-env, sourced by kas with the build folder
# as $1: bitbake is looked up where the real script looks (next to this file,
# or beside this repository), the build folder is made and entered.
OEROOT=$(cd "$(dirname "${BASH_SOURCE:-$0}")" && pwd)
BITBAKEDIR="$OEROOT/bitbake"
[ -d "$BITBAKEDIR" ] || BITBAKEDIR="$OEROOT/../bitbake"
if [ ! -d "$BITBAKEDIR" ]; then
    echo "Error: The bitbake directory ($BITBAKEDIR) does not exist!" >&2
    return 1
fi
BITBAKEDIR=$(readlink -f "$BITBAKEDIR")
BUILDDIR=$(readlink -f "${1:-build}")
mkdir -p "$BUILDDIR/conf"
BBPATH=$BUILDDIR
PATH="$OEROOT/scripts:$BITBAKEDIR/bin:$PATH"
BB_ENV_PASSTHROUGH_ADDITIONS="ALL_PROXY BBPATH_EXTRA BB_LOGCONFIG BB_NO_NETWORK \
BB_NUMBER_THREADS BB_SETSCENE_ENFORCE BB_SRCREV_POLICY DISTRO FTPS_PROXY FTP_PROXY \
GIT_PROXY_COMMAND HTTPS_PROXY HTTP_PROXY MACHINE NO_PROXY PARALLEL_MAKE SCREENDIR \
SDKMACHINE SOCKS5_PASSWD SOCKS5_USER SSH_AGENT_PID SSH_AUTH_SOCK STAMPS_DIR TCLIBC TCMODE"
export BBPATH BUILDDIR PATH BB_ENV_PASSTHROUGH_ADDITIONS
unset OEROOT BITBAKEDIR
cd "$BUILDDIR"
"""

RELEASES = {"wrynose": _wrynose, "scarthgap": _scarthgap}


def layer_conf(layer: Layer) -> str:
    """A stand-in layer.conf with the upstream layer's collection facts."""
    c = layer.collection
    lines = [
        f"# Stand-in: collection {c} with its upstream version, dependencies and series.",
        'BBPATH .= ":${LAYERDIR}"',
        'BBFILES += "${LAYERDIR}/recipes-*/*/*.bb ${LAYERDIR}/recipes-*/*/*.bbappend"',
        f'BBFILE_COLLECTIONS += "{c}"',
        f'BBFILE_PATTERN_{c} = "^${{LAYERDIR}}/"',
        f'BBFILE_PATTERN_IGNORE_EMPTY_{c} = "1"',
        f'BBFILE_PRIORITY_{c} = "5"',
        f'LAYERVERSION_{c} = "{layer.version}"',
        f'LAYERDEPENDS_{c} = "{layer.depends}"',
        f'LAYERSERIES_COMPAT_{c} = "{layer.compat}"',
    ]
    return "\n".join(lines) + "\n" + layer.extra


def _git(args: List[str], cwd: str) -> str:
    env = dict(os.environ, GIT_AUTHOR_DATE="2026-01-01T00:00:00Z",
               GIT_COMMITTER_DATE="2026-01-01T00:00:00Z", GIT_CONFIG_NOSYSTEM="1",
               GIT_CONFIG_GLOBAL=os.devnull)
    cmd = ["git", "-c", "user.name=kas tests", "-c", "user.email=kas-tests@invalid",
           "-c", "init.defaultBranch=main"] + args
    return subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, universal_newlines=True).stdout.strip()


def mirror_path(mirrors: str, url: str) -> str:
    """Where the stand-in bare repository of *url* lives under *mirrors*."""
    return os.path.join(mirrors, url.split("://", 1)[1]) + ".git"


def premirrors(mirrors: str) -> str:
    """KAS_PREMIRRORS: every upstream host redirected to the stand-ins."""
    hosts = "|".join(re.escape(h) for h in HOSTS)
    return f"https://({hosts})/(.*) file://{mirrors}/\\1/\\2.git"


def make_upstreams(root: str) -> Dict[Tuple[str, str], str]:
    """Create the stand-in bare repositories of every release under *root*/mirrors.

    A repository used by several releases (meta-openembedded, meta-virtualization)
    gets one branch per release, as upstream.  Returns the commit of each
    (release, repository id): one commit on the release's branch.
    """
    mirrors = os.path.join(root, "mirrors")
    commits = {}
    for release, upstreams in RELEASES.items():
        for repo_id, up in upstreams().items():
            work = os.path.join(root, "work", release, repo_id)
            _write_tree(work, up)
            _git(["init", "-q", "-b", up.branch], work)
            _git(["add", "-A"], work)
            _git(["commit", "-q", "-m", f"stand-in for {up.url} {up.branch}"], work)
            commits[(release, repo_id)] = _git(["rev-parse", "HEAD"], work)
            bare = mirror_path(mirrors, up.url)
            if not os.path.isdir(bare):
                os.makedirs(bare)
                _git(["init", "-q", "--bare"], bare)
            _git(["push", "-q", bare, f"HEAD:refs/heads/{up.branch}"], work)
    return commits


def _write_tree(work: str, up: Upstream) -> None:
    files = dict(up.files)
    for layer in up.layers:
        files[os.path.join(layer.path, "conf", "layer.conf")] = layer_conf(layer)
    for rel, text in files.items():
        path = os.path.join(work, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if rel.endswith("bin/bitbake"):  # the text is the release, e.g. "2.8"
            version = tuple(int(n) for n in text.split("."))
            text = (f"#!{sys.executable}\n# Stand-in bitbake {text}: tests/kas_env.py\n"
                    f"import sys\nsys.path.insert(0, {TESTS!r})\nimport kas_env\n"
                    f"sys.exit(kas_env.bitbake_main(sys.argv[1:], {version!r}))\n")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        if rel.endswith("bin/bitbake"):
            os.chmod(path, 0o755)


def kas_env(mirrors: str, **extra: str) -> Dict[str, str]:
    """The environment for kas: no KAS_* or build variables of the caller's."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("KAS_", "XENGUEST_")) and k not in BUILD_ENV}
    env["KAS_PREMIRRORS"] = premirrors(mirrors)
    env.update(extra)
    return env


def run_kas(args: List[str], cwd: str, env: Dict[str, str],
            timeout: float = 120) -> subprocess.CompletedProcess:
    """Run the installed kas (``python -m kas``) in *cwd*; stdout and stderr apart."""
    return subprocess.run([sys.executable, "-m", "kas"] + args, cwd=cwd, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=timeout)


def project_copy(root: str, name: str, old: str, new: str) -> str:
    """A copy of this project's kas/ with *old* replaced by *new* in kas/*name*.

    The copy is a git repository (kas takes the repository of the kas files as
    the repository without url) whose meta-xenguest is a link to the real layer.
    Returns the copy's kas folder.
    """
    import shutil

    project = os.path.join(root, "project")
    shutil.copytree(KAS_DIR, os.path.join(project, "kas"))
    os.symlink(os.path.join(ROOT, "meta-xenguest"), os.path.join(project, "meta-xenguest"))
    path = os.path.join(project, "kas", name)
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if old not in text:
        raise ValueError(f"{old!r} is not in kas/{name}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.replace(old, new))
    _git(["init", "-q"], project)
    return os.path.join(project, "kas")


# -- the stand-in bitbake ------------------------------------------------------

def _install_bb_import_stand_ins() -> None:
    """bb imports hashserv and prserv, which the bitbake-setup wheel lacks.

    These small modules are enough while no task runs (BB_HASHSERVE unused).
    """
    hashserv = types.ModuleType("hashserv")
    hashserv.is_valid_unihash = lambda s: bool(re.fullmatch(r"[0-9a-f]+", s or ""))
    hashserv.client = types.ModuleType("hashserv.client")
    prserv = types.ModuleType("prserv")
    serv = types.ModuleType("prserv.serv")
    serv.PRServiceConfigError = type("PRServiceConfigError", (Exception,), {})
    serv.auto_start = lambda d: None
    serv.auto_shutdown = lambda: None
    prserv.serv = serv
    for name, module in (("hashserv", hashserv), ("hashserv.client", hashserv.client),
                         ("prserv", prserv), ("prserv.serv", serv)):
        sys.modules.setdefault(name, module)


class _Checker:
    """What a build would check first, over the parsed configurations."""

    def __init__(self, mcdata: Dict[str, Any]) -> None:
        import bb.cooker

        self.bb = bb
        self.mcdata = mcdata
        self.errors: List[str] = []
        self.recipes: Dict[str, Dict[str, str]] = {}
        self.report: Dict[str, Any] = {"configs": {}, "recipes": {}, "host_guests": []}
        for mc, d in mcdata.items():
            ns = types.SimpleNamespace(data=d)
            try:
                bb.cooker.BBCooker.handleCollections(ns, d.getVar("BBFILE_COLLECTIONS"))
            except bb.cooker.CollectionError as e:
                self.errors.append(f"multiconfig '{mc}': {e}")
                ns.bbfile_config_priorities = []
            collector = bb.cooker.CookerCollectFiles(ns.bbfile_config_priorities, mc)
            bbfiles = collector.collect_bbfiles(d, None)[0]
            self.recipes[mc] = {bb.parse.vars_from_file(f, d)[0]: f for f in bbfiles}
            for base, append in collector.bbappends:
                pattern = re.escape(base).replace("%", ".*")
                if not any(re.fullmatch(pattern, os.path.basename(f)) for f in bbfiles):
                    self.errors.append(f"No recipes in multiconfig '{mc}' for {append}")
            self.report["configs"][mc] = self._config_report(d, mc)

    def _config_report(self, d: Any, mc: str) -> Dict[str, Any]:
        info: Dict[str, Any] = {v: d.getVar(v) for v in CONFIG_VARS}
        info["BBLAYERS"] = (d.getVar("BBLAYERS") or "").split()
        info["collections"] = {
            c: {"version": d.getVar(f"LAYERVERSION_{c}"),
                "depends": d.getVar(f"LAYERDEPENDS_{c}"),
                "compat": d.getVar(f"LAYERSERIES_COMPAT_{c}")}
            for c in (d.getVar("BBFILE_COLLECTIONS") or "").split()}
        info["recipes"] = sorted(self.recipes[mc])
        return info

    def target(self, target: str) -> None:
        """Check one command-line target (RECIPE or mc:NAME:RECIPE)."""
        mc, pn = "", target
        if target.startswith(("mc:", "multiconfig:")):
            parts = target.split(":")
            if len(parts) != 3:
                self.errors.append(f"Invalid target {target}")
                return
            mc, pn = parts[1], parts[2]
            if mc not in self.mcdata:
                self.errors.append(f"Multiconfig '{mc}' of target {target} is not in "
                                   "BBMULTICONFIG")
                return
        if pn not in self.recipes[mc]:
            self.errors.append(f"Nothing PROVIDES '{pn}' (multiconfig '{mc}')")
            return
        view = self._recipe_view(mc, pn)
        self.report["recipes"][target] = {v: view.getVar(v) for v in RECIPE_VARS}
        self._required_features(target, view, self.recipes[mc][pn])
        self._image_additions(target, mc, view)
        self._host_guests(target, mc, view)

    def _recipe_view(self, mc: str, pn: str) -> Any:
        """The configuration as the recipe *pn* sees it (its pn-PN override)."""
        view = self.bb.data.createCopy(self.mcdata[mc])
        view.setVar("FILE", self.recipes[mc][pn])
        view.setVar("PN", pn)
        return view

    def _required_features(self, target: str, view: Any, path: str) -> None:
        with open(path, encoding="utf-8") as f:
            found = re.search(r'^REQUIRED_DISTRO_FEATURES\s*\??=\s*"([^"]*)"', f.read(), re.M)
        features = (view.getVar("DISTRO_FEATURES") or "").split()
        for feature in (found.group(1).split() if found else []):
            if feature not in features:
                self.errors.append(f"{target}: missing required distro feature "
                                   f"'{feature}' (not in DISTRO_FEATURES)")

    def _image_additions(self, target: str, mc: str, view: Any) -> None:
        bbpath = (view.getVar("BBPATH") or "").split(":")
        for cls in (view.getVar("IMAGE_CLASSES") or "").split():
            if not any(os.path.exists(os.path.join(p, sub, cls + ".bbclass"))
                       for p in bbpath for sub in ("classes-recipe", "classes")):
                self.errors.append(f"{target}: Could not inherit file classes/{cls}.bbclass")
        for pkg in (view.getVar("IMAGE_INSTALL") or "").split():
            if pkg not in self.recipes[mc]:
                self.errors.append(f"{target}: Nothing RPROVIDES '{pkg}' (IMAGE_INSTALL)")
        layers = (view.getVar("BBLAYERS") or "").split()
        for suite in (view.getVar("TEST_SUITES") or "").split():
            if suite != "auto" and not any(
                    os.path.exists(os.path.join(layer, "lib/oeqa/runtime/cases", suite + ".py"))
                    for layer in layers):
                self.errors.append(f"{target}: test module {suite} (TEST_SUITES) not found")

    def _host_guests(self, target: str, mc: str, view: Any) -> None:
        if not view.getVar("XENGUEST_HOST_GUESTS"):
            return
        import xenguest.bitbake.host
        from xenguest.errors import XenguestError

        try:
            guests = xenguest.bitbake.host.host_guests(view)
        except XenguestError as e:
            self.errors.append(f"{target}: {e}")
            return
        for guest in guests:
            self.report["host_guests"].append(
                {"target": target, "name": guest.name, "path": guest.path,
                 "depends": guest.depends, "mcdepends": guest.mcdepends})
            if guest.mcdepends:
                _, frm, to, pn, _task = guest.mcdepends.split(":")
                if to not in self.mcdata:
                    self.errors.append(f"{target}: mcdepends {guest.mcdepends}: multiconfig "
                                       f"'{to}' is not in BBMULTICONFIG")
                    continue
                if frm != mc:  # the runqueue drops it without a word: say it here
                    self.errors.append(f"{target}: mcdepends {guest.mcdepends} would be "
                                       f"dropped: the runqueue names this configuration "
                                       f"'{mc}', not '{frm}'")
                    continue
                guest_d = self.mcdata[to]
                image = "{}-{}{}.xenguest".format(pn, guest_d.getVar("MACHINE"),
                                                  guest_d.getVar("IMAGE_NAME_SUFFIX"))
                expected = os.path.join(guest_d.getVar("DEPLOY_DIR_IMAGE"), image)
                if guest.path != expected:
                    self.errors.append(f"{target}: guest {guest.name} is read from {guest.path}, "
                                       f"but multiconfig '{to}' deploys it as {expected}")
            else:
                to, pn = mc, (guest.depends or ":").split(":")[0]
            if pn and pn not in self.recipes[to]:
                self.errors.append(f"{target}: Nothing PROVIDES '{pn}' (multiconfig '{to}', "
                                   "XENGUEST_HOST_GUESTS)")


def _parse_configurations(version: Tuple[int, int]) -> Dict[str, Any]:
    import bb.cookerdata
    from bitbake_standin import cooker_data_builder

    config = bb.cookerdata.CookerConfiguration()
    config.env = dict(os.environ)
    builder = cooker_data_builder(version)(config)
    builder.parseBaseConfiguration()
    return dict(builder.mcdata)


def bitbake_main(argv: List[str], version: Tuple[int, int]) -> int:
    """The stand-in ``bitbake [-c TASK] [options] TARGET...`` run by kas in the build
    folder, parsing as BitBake release *version* does."""
    import logging

    task, targets, args = "build", [], list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-c", "--cmd"):
            task = args.pop(0)
        elif not arg.startswith("-"):
            targets.append(arg)
    messages: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(f"{record.levelname}: {record.getMessage()}")

    logging.getLogger("BitBake").addHandler(Collect(logging.WARNING))
    logging.getLogger("BitBake").propagate = False
    _install_bb_import_stand_ins()
    report: Dict[str, Any] = {"task": task, "targets": targets}
    errors: List[str] = []
    try:
        checker = _Checker(_parse_configurations(version))
    except Exception as e:  # what real bitbake prints for a broken configuration
        errors.append(f"{type(e).__name__}: {e}")
    else:
        for target in targets:
            checker.target(target)
        errors.extend(checker.errors)
        report.update(checker.report)
    report["messages"] = messages
    report["errors"] = errors
    with open(REPORT, "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2, sort_keys=True)
    for line in messages + [f"ERROR: {e}" for e in errors]:
        print(line, file=sys.stderr)
    if errors or any(m.startswith(("ERROR", "CRITICAL")) for m in messages):
        return 1
    print(f"NOTE: stand-in bitbake: -c {task} {' '.join(targets)}: configuration checked")
    return 0


def read_report(build: str) -> Dict[str, Any]:
    """The stand-in bitbake's report in the build folder *build*."""
    with open(os.path.join(build, REPORT), encoding="utf-8") as f:
        return json.load(f)


def kas_files(*names: str) -> str:
    """A kas command-line configuration: files under kas/ joined with ':'."""
    return ":".join(os.path.join(KAS_DIR, n) for n in names)


def read_text(path: str) -> Optional[str]:
    """The text of *path*, or None when it does not exist."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None
