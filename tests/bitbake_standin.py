"""The stand-in "core" layer of the BitBake tests: OE-core's names and meanings for
what meta-xenguest relies on (conf/bitbake.conf, base.bbclass, the image classes'
type/deploy contract, python3-dir, allarch, systemd, update-rc.d, native and
nativesdk), written by the tests.

Own code that mirrors OE-core's contracts; no OE-core code.
"""

import textwrap
from typing import Dict, Tuple

#: Release series the stand-in core can pretend to be, and how they differ for us.
SERIES = ("scarthgap", "styhead", "walnascar", "whinlatter", "wrynose")

#: The BitBake release each series builds with (kirkstone: a release the layer refuses).
BITBAKE_OF_SERIES = {"kirkstone": (2, 0), "scarthgap": (2, 8), "styhead": (2, 10),
                     "walnascar": (2, 12), "whinlatter": (2, 16), "wrynose": (2, 18)}


def cooker_data_builder(bitbake: Tuple[int, int]) -> type:
    """BitBake's configuration builder (``bb.cookerdata``) as release *bitbake* has it.

    The wheel ships BitBake 2.19.  Before 2.12 (scarthgap, styhead) one thing
    differed that matters to the layer: ``parseConfigurationFiles`` set
    ``BB_CURRENT_MC`` to ``"default"`` in the default configuration (its
    default argument), where 2.12 and later set ``""``.  The runqueue keys
    the default configuration ``""`` in both.
    """
    import bb.cookerdata

    if bitbake >= (2, 12):
        return bb.cookerdata.CookerDataBuilder

    class DataBuilderBefore212(bb.cookerdata.CookerDataBuilder):
        def parseConfigurationFiles(self, prefiles, postfiles, mc="default"):  # noqa: N802
            return super().parseConfigurationFiles(prefiles, postfiles, mc)

    return DataBuilderBefore212


#: Series whose default image types are zstd-compressed (OE-core from whinlatter on).
ZSTD_SERIES = ("whinlatter", "wrynose")


def conf_text(series: str) -> str:
    """conf/bitbake.conf of the stand-in core for a release *series*."""
    # scarthgap unpacks into WORKDIR; later series into UNPACKDIR and write the
    # image output manifest.
    unpack = ('S = "${WORKDIR}/${BP}"\n' if series == "scarthgap" else
              'UNPACKDIR ??= "${WORKDIR}/sources"\nS = "${UNPACKDIR}/${BP}"\n')
    fstypes = "tar.zst" if series in ZSTD_SERIES else "tar.gz"
    return (CONF_TEMPLATE.replace("@UNPACK@", unpack).replace("@SERIES@", series)
            .replace("@FSTYPES@", fstypes))


def machine_text(name: str, series: str) -> str:
    """conf/machine/NAME.conf of the stand-in core (what OE-core's qemu machines set)."""
    fstypes = "tar.zst ext4.zst" if series in ZSTD_SERIES else "tar.bz2 ext4"
    return MACHINES[name] + f'IMAGE_FSTYPES += "{fstypes}"\n'


CONF_TEMPLATE = """\
# Stand-in for OE-core's conf/bitbake.conf (names and meanings as in OE-core).
STANDIN_SERIES = "@SERIES@"
CACHE = "${TOPDIR}/cache"
BB_CACHEDIR ?= "${CACHE}"
TMPDIR ?= "${TOPDIR}/tmp"
DL_DIR ?= "${TOPDIR}/downloads"
PN = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[0] or 'defaultpkgname'}"
PV = "${@bb.parse.vars_from_file(d.getVar('FILE', False),d)[1] or '1.0'}"
PR = "r0"
FILE_DIRNAME = "${@os.path.dirname(d.getVar('FILE', False))}"
THISDIR = "${@os.path.dirname(d.getVar('FILE'))}"
PF = "${PN}-${PV}-${PR}"
SPECIAL_PKGSUFFIX = "-native -cross"
BPN = "${@standin_bpn(d)}"
BP = "${BPN}-${PV}"
PACKAGES = "${PN}"
SRC_URI ?= ""
BUILD_ARCH = "x86_64"
TARGET_OS = "linux"
TARGET_ARCH ?= "aarch64"
SDK_ARCH = "x86_64"
PACKAGE_ARCH ?= "${TARGET_ARCH}"
MACHINE_ARCH = "${@d.getVar('MACHINE').replace('-', '_')}"
MULTIMACH_TARGET_SYS = "${PACKAGE_ARCH}-${TARGET_OS}"
KERNEL_IMAGETYPE ?= "Image"
MACHINEOVERRIDES ?= "${MACHINE}"
CLASSOVERRIDE ?= "class-target"
OVERRIDES = "${TARGET_OS}:${TARGET_ARCH}:pn-${PN}:${MACHINEOVERRIDES}:${CLASSOVERRIDE}:forcevariable"
FILESOVERRIDES = "${TARGET_ARCH}:${MACHINEOVERRIDES}"
FILESEXTRAPATHS ?= "__default:"
FILESPATH = "${@base_set_filespath(['${FILE_DIRNAME}/${BP}', '${FILE_DIRNAME}/${BPN}', '${FILE_DIRNAME}/files'], d)}"

BASE_WORKDIR ?= "${TMPDIR}/work"
WORKDIR = "${BASE_WORKDIR}/${MULTIMACH_TARGET_SYS}/${PN}/${PV}"
T = "${WORKDIR}/temp"
@UNPACK@B = "${S}"
D = "${WORKDIR}/image"
STAMP = "${TMPDIR}/stamps/${MULTIMACH_TARGET_SYS}/${PN}/${PV}"
LOGFIFO = "${T}/fifo.${@os.getpid()}"
DEPLOY_DIR ?= "${TMPDIR}/deploy"
DEPLOY_DIR_IMAGE ?= "${DEPLOY_DIR}/images/${MACHINE}"

prefix = "/usr"
exec_prefix = "${prefix}"
baselib = "lib"
bindir = "${exec_prefix}/bin"
libdir = "${exec_prefix}/${baselib}"
datadir = "${prefix}/share"
sysconfdir = "/etc"
prefix_native = "/usr"
bindir_native = "${prefix_native}/bin"
libdir_native = "${prefix_native}/lib"
STAGING_DIR_NATIVE = "${WORKDIR}/recipe-sysroot-native"
SDKPATHNATIVE = "/usr/local/oe-sdk-hardcoded-buildpath/sysroots/${SDK_ARCH}-oesdk-linux"
USRBINPATH = "${bindir}"
USRBINPATH:class-native = "/usr/bin"
USRBINPATH:class-nativesdk = "/usr/bin"

DATE := "${@time.strftime('%Y%m%d', time.gmtime())}"
TIME := "${@time.strftime('%H%M%S', time.gmtime())}"
DATETIME = "${DATE}${TIME}"
SOURCE_DATE_EPOCH_FALLBACK ??= "1302044400"
export SOURCE_DATE_EPOCH ?= "${SOURCE_DATE_EPOCH_FALLBACK}"
REPRODUCIBLE_TIMESTAMP_ROOTFS ??= "1520598896"

BB_BASEHASH_IGNORE_VARS ?= "TMPDIR FILE PATH PWD BB_TASKHASH DATE TIME DATETIME THISDIR \\
    FILESEXTRAPATHS FILE_DIRNAME HOME LOGNAME SHELL USER DL_DIR TOPDIR WORKDIR T \\
    SOURCE_DATE_EPOCH STAMP CACHE BB_CACHEDIR LOGFIFO BB_CURRENTTASK"

include conf/local.conf
include conf/multiconfig/${BB_CURRENT_MC}.conf
include conf/machine/${MACHINE}.conf

IMAGE_FSTYPES ?= "@FSTYPES@"
"""

BASE_CLASS = r'''
# Stand-in for OE-core's base.bbclass: fetch and unpack with BitBake's fetcher,
# empty configure/compile/install, and the helpers bitbake.conf uses.

def standin_bpn(d):
    pn = d.getVar('PN')
    for prefix in ('nativesdk-',):
        if pn.startswith(prefix):
            pn = pn[len(prefix):]
    for suffix in (d.getVar('SPECIAL_PKGSUFFIX') or '').split():
        if pn.endswith(suffix):
            pn = pn[:-len(suffix)]
    return pn

def base_set_filespath(paths, d):
    # FILESEXTRAPATHS first, then the recipe's folders; in each folder the
    # FILESOVERRIDES subfolders (most specific first), then the folder itself.
    extra = (d.getVar('FILESEXTRAPATHS') or '').replace('__default:', '')
    folders = [p for p in extra.split(':') + paths if p]
    overrides = [o for o in reversed((d.getVar('FILESOVERRIDES') or '').split(':')) if o]
    result = []
    for folder in folders:
        result += [os.path.join(folder, o) for o in overrides] + [folder]
    return ':'.join(result)

python base_do_fetch () {
    urls = (d.getVar('SRC_URI') or '').split()
    if urls:
        bb.fetch2.Fetch(urls, d).download()
}
do_fetch[file-checksums] = "${@bb.fetch.get_checksum_file_list(d)}"
do_fetch[vardeps] += "SRC_URI"

python base_do_unpack () {
    urls = (d.getVar('SRC_URI') or '').split()
    if urls:
        bb.fetch2.Fetch(urls, d).unpack(d.getVar('UNPACKDIR') or d.getVar('WORKDIR'))
}
do_unpack[dirs] = "${WORKDIR}"
do_unpack[cleandirs] = "${@d.getVar('UNPACKDIR') or d.getVar('S')}"

base_do_configure () {
	:
}

base_do_compile () {
	:
}

base_do_install () {
	:
}
do_install[dirs] = "${B}"
do_install[cleandirs] = "${D}"

base_do_build () {
	:
}

addtask fetch
addtask unpack after do_fetch
addtask configure after do_unpack
addtask compile after do_configure
addtask install after do_compile
addtask build after do_install

EXPORT_FUNCTIONS do_fetch do_unpack do_configure do_compile do_install do_build
'''

IMAGE_CLASS = r'''
# Stand-in for OE-core's image.bbclass and image_types.bbclass: the contract of
# image types. A type T in IMAGE_FSTYPES (plus the IMAGE_TYPEDEP:T closure, minus
# IMAGE_TYPES_MASKED) gets a task do_image_<base type> after do_image, writing
# ${IMGDEPLOYDIR}/${IMAGE_NAME}.T;
# its postfunc create_symlinks links ${IMAGE_LINK_NAME}.T; do_image_complete
# deploys IMGDEPLOYDIR into DEPLOY_DIR_IMAGE (sstate in OE-core). Types here:
# tar and ext4 (mke2fs -d, as OE-core), and their gz/bz2/xz/zst conversions
# (zst with the zstd program, as OE-core's CONVERSION_CMD:zst).

inherit image-artifact-names
IMGDEPLOYDIR = "${WORKDIR}/deploy-${PN}-image-complete"
IMGMANIFESTDIR = "${WORKDIR}/image-task-manifest"
IMAGE_OUTPUT_MANIFEST = "${WORKDIR}/deploy-image-output-manifest/manifest.json"
IMAGE_ROOTFS = "${WORKDIR}/rootfs"
IMAGE_TYPES_MASKED ?= ""
IMAGE_CLASSES ??= ""
IMAGE_INSTALL ?= ""
ROOTFS_POSTPROCESS_COMMAND ?= ""
PACKAGE_ARCH = "${MACHINE_ARCH}"
LICENSE ?= "MIT"
CONVERSIONTYPES = "gz bz2 xz zst"

inherit_defer ${IMAGE_CLASSES}

do_fetch[noexec] = "1"
do_unpack[noexec] = "1"
do_configure[noexec] = "1"
do_compile[noexec] = "1"
do_install[noexec] = "1"

python do_rootfs () {
    # A tiny rootfs standing for the packages, then the post-process commands.
    root = d.getVar('IMAGE_ROOTFS')
    os.makedirs(os.path.join(root, 'etc'))
    with open(os.path.join(root, 'etc', 'hostname'), 'w') as f:
        f.write(d.getVar('MACHINE') + '\n')
    os.makedirs(os.path.join(root, 'usr', 'share', 'standin'))
    with open(os.path.join(root, 'usr', 'share', 'standin', 'packages'), 'w') as f:
        f.write('\n'.join(sorted((d.getVar('IMAGE_INSTALL') or '').split())) + '\n')
    for cmd in (d.getVar('ROOTFS_POSTPROCESS_COMMAND') or '').replace(';', ' ').split():
        bb.build.exec_func(cmd, d)
}
do_rootfs[cleandirs] = "${IMAGE_ROOTFS} ${IMGDEPLOYDIR}"
# In OE-core: after do_prepare_recipe_sysroot, itself after do_fetch.
addtask rootfs after do_fetch before do_build

python do_image () {
    pass
}
do_image[cleandirs] = "${IMGMANIFESTDIR}"
addtask image after do_rootfs

def standin_write_image(d, base, conversions, keep):
    import gzip, bz2, lzma, subprocess, tarfile
    epoch = int(d.getVar('REPRODUCIBLE_TIMESTAMP_ROOTFS'))
    root = d.getVar('IMAGE_ROOTFS')
    out = os.path.join(d.getVar('IMGDEPLOYDIR'), d.getVar('IMAGE_NAME') + '.' + base)
    if base == 'ext4':
        env = dict(os.environ, E2FSPROGS_FAKE_TIME=str(epoch))
        subprocess.run(['mke2fs', '-q', '-F', '-t', 'ext4', '-d', root, out, '8M'],
                       env=env, check=True)
    else:
        standin_write_tar(root, out, epoch)
    # Reproducible like OE-core's conversions (gzip -n: no name, no time).
    openers = {'gz': lambda f: gzip.GzipFile('', 'wb', fileobj=f, mtime=0),
               'bz2': lambda f: bz2.BZ2File(f, 'wb'), 'xz': lambda f: lzma.LZMAFile(f, 'wb')}
    for ctype in conversions:
        if ctype == 'zst':
            with open(out + '.zst', 'wb') as dst:
                subprocess.run(['zstd', '-f', '-k', '-c', '-3', out], stdout=dst, check=True)
            continue
        with open(out, 'rb') as src, open(out + '.' + ctype, 'wb') as raw:
            with openers[ctype](raw) as dst:
                dst.write(src.read())
    if not keep:
        os.remove(out)

def standin_write_tar(root, out, epoch):
    import tarfile
    with tarfile.open(out, 'w', format=tarfile.GNU_FORMAT) as tar:
        for folder, dirs, files in os.walk(root):
            dirs.sort()
            for name in [folder] + [os.path.join(folder, f) for f in sorted(files)]:
                info = tar.gettarinfo(name, './' + os.path.relpath(name, root))
                info.mtime, info.uid, info.gid, info.uname, info.gname = epoch, 0, 0, 'root', 'root'
                if info.isreg():
                    with open(name, 'rb') as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)

python create_symlinks () {
    deploy = d.getVar('IMGDEPLOYDIR')
    link_name = d.getVar('IMAGE_LINK_NAME')
    task = 'do_' + d.getVar('BB_CURRENTTASK')
    if not link_name:
        return
    for type in (d.getVarFlag(task, 'subimages', False) or '').split():
        src = d.getVar('IMAGE_NAME') + '.' + type
        dst = os.path.join(deploy, link_name + '.' + type)
        if os.path.exists(os.path.join(deploy, src)):
            bb.note('Creating symlink: %s -> %s' % (dst, src))
            if os.path.islink(dst):
                os.remove(dst)
            os.symlink(src, dst)
}

python write_image_output_manifest () {
    import json
    task = d.getVar('BB_CURRENTTASK')
    names = [d.getVar('IMAGE_NAME') + '.' + t
             for t in (d.getVarFlag('do_' + task, 'subimages', False) or '').split()]
    images = [{'filename': n} for n in names
              if os.path.exists(os.path.join(d.getVar('IMGDEPLOYDIR'), n))]
    os.makedirs(d.getVar('IMGMANIFESTDIR'), exist_ok=True)
    with open(os.path.join(d.getVar('IMGMANIFESTDIR'), 'do_' + task + '.json'), 'w') as f:
        json.dump([{'taskname': task, 'imagetype': d.getVarFlag('do_' + task, 'imagetype', False),
                    'images': images}], f)
}

python do_image_complete () {
    # What sstate does for do_image_complete in OE-core: IMGDEPLOYDIR -> DEPLOY_DIR_IMAGE.
    import json, shutil
    src, dst = d.getVar('IMGDEPLOYDIR'), d.getVar('DEPLOY_DIR_IMAGE')
    os.makedirs(dst, exist_ok=True)
    for name in sorted(os.listdir(src)):
        target = os.path.join(dst, name)
        if os.path.lexists(target):
            os.remove(target)
        if os.path.islink(os.path.join(src, name)):
            os.symlink(os.readlink(os.path.join(src, name)), target)
        else:
            shutil.copy2(os.path.join(src, name), target)
    if d.getVar('STANDIN_SERIES') != 'scarthgap':
        data = []
        folder = d.getVar('IMGMANIFESTDIR')
        for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
            with open(os.path.join(folder, name)) as f:
                data.extend(json.load(f))
        os.makedirs(os.path.dirname(d.getVar('IMAGE_OUTPUT_MANIFEST')), exist_ok=True)
        with open(d.getVar('IMAGE_OUTPUT_MANIFEST'), 'w') as f:
            json.dump(data, f)
}
addtask image_complete after do_image before do_build

python () {
    if d.getVar('STANDIN_SERIES') == 'scarthgap':
        d.delVar('write_image_output_manifest')
    conversions = d.getVar('CONVERSIONTYPES').split()
    def split(t):
        parts = t.split('.')
        return parts[0], parts[1:]
    wanted, todo = [], list(d.getVar('IMAGE_FSTYPES').split())
    while todo:
        t = todo.pop(0)
        if t in wanted:
            continue
        wanted.append(t)
        todo += (d.getVar('IMAGE_TYPEDEP:' + split(t)[0]) or '').split()
    masked = d.getVar('IMAGE_TYPES_MASKED').split()
    bases = {}
    for t in wanted:
        base, convs = split(t)
        if base in masked:
            continue
        if base not in ('tar', 'ext4') or any(c not in conversions for c in convs):
            bb.fatal("No IMAGE_CMD defined for IMAGE_FSTYPES entry '%s' "
                     "(stand-in core: tar and ext4 types only)" % t)
        bases.setdefault(base, []).append(t)
    for base, types in bases.items():
        task = 'do_image_' + base
        convs = sorted({c for t in types for c in split(t)[1]})
        d.setVar(task, '    standin_write_image(d, %r, %r, %r)\n' % (base, convs, base in types))
        d.setVarFlag(task, 'func', '1')
        d.setVarFlag(task, 'filename', d.getVar('FILE'))
        d.setVarFlag(task, 'lineno', '1')
        d.setVarFlag(task, 'python', '1')
        d.setVarFlag(task, 'imagetype', base)
        d.setVarFlag(task, 'subimages', ' '.join(types))
        manifest = '' if d.getVar('STANDIN_SERIES') == 'scarthgap' else ' write_image_output_manifest'
        d.setVarFlag(task, 'postfuncs', 'create_symlinks' + manifest)
        d.setVarFlag(task, 'vardepsexclude', 'DATETIME DATE')
        bb.build.addtask(task, 'do_image_complete', 'do_image', d)
}
'''

CORE_FILES: Dict[str, str] = {
    "conf/layer.conf": textwrap.dedent("""\
        BBPATH .= ":${LAYERDIR}"
        BBFILES += "${LAYERDIR}/recipes-*/*/*.bb"
        BBFILE_COLLECTIONS += "core"
        BBFILE_PATTERN_core = "^${LAYERDIR}/"
        BBFILE_PRIORITY_core = "5"
        LAYERSERIES_CORENAMES = "${STANDIN_SERIES_NAME}"
        LAYERVERSION_core = "15"
        LAYERSERIES_COMPAT_core = "${STANDIN_SERIES_NAME}"
        """),
    "classes/base.bbclass": BASE_CLASS,
    "classes/image.bbclass": IMAGE_CLASS,
    "classes/image-artifact-names.bbclass": textwrap.dedent("""\
        # Stand-in for OE-core's image-artifact-names.bbclass: the names of what
        # images deploy (image.bbclass inherits it; other recipes may).
        IMAGE_BASENAME ?= "${PN}"
        IMAGE_VERSION_SUFFIX ?= "-${DATETIME}"
        IMAGE_VERSION_SUFFIX[vardepsexclude] += "DATETIME SOURCE_DATE_EPOCH"
        IMAGE_NAME ?= "${IMAGE_LINK_NAME}${IMAGE_VERSION_SUFFIX}"
        IMAGE_LINK_NAME ?= "${IMAGE_BASENAME}${IMAGE_MACHINE_SUFFIX}${IMAGE_NAME_SUFFIX}"
        IMAGE_MACHINE_SUFFIX ??= "-${MACHINE}"
        IMAGE_NAME_SUFFIX ??= ".rootfs"
        """),
    "classes/core-image.bbclass": textwrap.dedent("""\
        # Stand-in for OE-core's core-image.bbclass.
        CORE_IMAGE_EXTRA_INSTALL ?= ""
        IMAGE_INSTALL ?= "packagegroup-core-boot ${CORE_IMAGE_EXTRA_INSTALL}"
        inherit image
        """),
    "classes/allarch.bbclass": "# Stand-in for OE-core's allarch.bbclass.\n"
                               'PACKAGE_ARCH = "all"\n',
    "classes/systemd.bbclass": "# Stand-in for OE-core's systemd.bbclass.\n"
                               'SYSTEMD_PACKAGES ?= "${PN}"\n'
                               'SYSTEMD_AUTO_ENABLE ??= "enable"\n',
    "classes/update-rc.d.bbclass": "# Stand-in for OE-core's update-rc.d.bbclass.\n"
                                   'INITSCRIPT_PACKAGES ?= "${PN}"\n',
    "classes/python3-dir.bbclass": textwrap.dedent("""\
        # Stand-in for OE-core's python3-dir.bbclass.
        PYTHON_BASEVERSION = "3.12"
        PYTHON_MAJMIN = "3.12"
        PYTHON_DIR = "python${PYTHON_BASEVERSION}"
        PYTHON_PN = "python3"
        PYTHON_SITEPACKAGES_DIR = "${libdir}/${PYTHON_DIR}/site-packages"
        """),
    "classes/native.bbclass": textwrap.dedent("""\
        # Stand-in for OE-core's native.bbclass: build-host paths inside the
        # recipe's native sysroot, PN-native, dependencies mapped to -native.
        CLASSOVERRIDE = "class-native"
        PACKAGE_ARCH = "${BUILD_ARCH}"
        prefix = "${STAGING_DIR_NATIVE}${prefix_native}"
        exec_prefix = "${STAGING_DIR_NATIVE}${prefix_native}"
        bindir = "${STAGING_DIR_NATIVE}${bindir_native}"
        libdir = "${STAGING_DIR_NATIVE}${libdir_native}"

        python native_virtclass_handler () {
            # BitBake named the variant <pn>-native; map the dependencies.
            d = e.data
            if not d.getVar('PN').endswith('-native'):
                return
            for var in ('RDEPENDS:${PN}', 'DEPENDS'):
                deps = (d.getVar(var, False) or '').split()
                d.setVar(var, ' '.join(x if x.endswith('-native') else x + '-native' for x in deps))
        }
        addhandler native_virtclass_handler
        native_virtclass_handler[eventmask] = "bb.event.RecipePreFinalise"
        """),
    "classes/nativesdk.bbclass": textwrap.dedent("""\
        # Stand-in for OE-core's nativesdk.bbclass: SDK host paths, nativesdk-PN,
        # dependencies mapped to nativesdk-.
        CLASSOVERRIDE = "class-nativesdk"
        PACKAGE_ARCH = "${SDK_ARCH}-nativesdk"
        prefix = "${SDKPATHNATIVE}/usr"
        exec_prefix = "${SDKPATHNATIVE}/usr"

        python nativesdk_virtclass_handler () {
            # BitBake named the variant <pn>-nativesdk: OE-core renames it nativesdk-<pn>.
            d = e.data
            pn = d.getVar('PN')
            if not pn.endswith('-nativesdk'):
                return
            d.setVar('PN', 'nativesdk-' + pn[:-len('-nativesdk')])
            deps = (d.getVar('RDEPENDS:${PN}', False) or '').split()
            d.setVar('RDEPENDS:${PN}', ' '.join(
                x if x.startswith('nativesdk-') else 'nativesdk-' + x for x in deps))
        }
        addhandler nativesdk_virtclass_handler
        nativesdk_virtclass_handler[eventmask] = "bb.event.RecipePreFinalise"
        """),
}

#: meta-virtualization's conf/layer.conf as the layers that depend on it see it:
#: its collection name (recipes of its own are not needed here).
VIRTUALIZATION_LAYER_CONF = textwrap.dedent("""\
    # Stand-in for meta-virtualization: collection virtualization-layer.
    BBPATH .= ":${LAYERDIR}"
    BBFILE_COLLECTIONS += "virtualization-layer"
    BBFILE_PATTERN_virtualization-layer = "^${LAYERDIR}/"
    BBFILE_PATTERN_IGNORE_EMPTY_virtualization-layer = "1"
    LAYERSERIES_COMPAT_virtualization-layer = "${STANDIN_SERIES_NAME}"
    """)

MACHINES: Dict[str, str] = {
    "qemuarm64": 'TARGET_ARCH = "aarch64"\nKERNEL_IMAGETYPE = "Image"\n',
    "qemux86-64": 'TARGET_ARCH = "x86_64"\nKERNEL_IMAGETYPE = "bzImage"\n',
}
