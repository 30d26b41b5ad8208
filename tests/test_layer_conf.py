"""meta-xenguest's layer.conf with the real BitBake: series compatibility, addpylib,
and no effect on other recipes merely by adding the layer (yocto-check-layer's rule)."""

import os
import re

import pytest

import bitbake_env as be
from bitbake_standin import SERIES
from bitbake_env import bb

PLAIN = """\
    LICENSE = "MIT"
    SRC_URI = "file://hello.txt"
    do_install() {
        install -d ${D}${datadir}
        install -m 0644 ${UNPACKDIR}/hello.txt ${D}${datadir}/hello.txt
    }
    """
IMAGE = """\
    LICENSE = "MIT"
    inherit core-image
    """


@pytest.mark.parametrize("series", SERIES)
def test_layer_is_compatible_with_each_series(tmp_path, series):
    env = be.BitBakeEnv(str(tmp_path), series=series)
    data = env.builder.data
    assert "xenguest" in data.getVar("BBFILE_COLLECTIONS").split()
    assert data.getVar("LAYERDEPENDS_xenguest") == "core"
    assert series in data.getVar("LAYERSERIES_COMPAT_xenguest").split()
    assert os.path.join(be.LAYER, "recipes-*/*/*.bb") in data.getVar("BBFILES").split()


@pytest.mark.parametrize("virtualization", [False, True], ids=["core-only", "virtualization"])
def test_host_recipes_need_meta_virtualization(tmp_path, virtualization):
    """xenguest-manager and xenguest-network run Xen's tools (meta-virtualization):
    BitBake sees them only next to that layer; guests and the tools build with
    OE-core alone."""
    env = be.BitBakeEnv(str(tmp_path), virtualization=virtualization)
    recipes = env.collect_recipes()
    ours = sorted(pn for pn, path in recipes.items() if path.startswith(be.LAYER + os.sep))
    host = ["xenguest-manager", "xenguest-network"] if virtualization else []
    assert ours == sorted(["xenguest-image-minimal", "xenguest-tools"] + host)
    for pn in ours:
        for variant in (("", "native", "nativesdk") if pn == "xenguest-tools" else ("",)):
            assert env.parse(recipes[pn], variant).getVar("PN")


def test_layer_refuses_an_older_core(tmp_path):
    with be.bb_messages() as messages, pytest.raises(bb.BBHandledException):
        be.BitBakeEnv(str(tmp_path), series="kirkstone")
    assert any("Layer xenguest is not compatible" in m for m in messages)


def test_addpylib_makes_the_library_importable(tmp_path):
    env = be.BitBakeEnv(str(tmp_path))
    recipe = env.write_recipe("uses-lib", 'LICENSE = "MIT"\n'
                              'LIBFILE = "${@xenguest.__file__}"\n')
    d = env.parse(recipe)
    assert d.getVar("LIBFILE") == os.path.join(be.LIB, "xenguest", "__init__.py")


def signatures(env, name, text, files=None):
    recipe = env.write_recipe(name, text, files)
    d = env.parse(recipe)
    tasks = sorted(d.getVar("__BBTASKS", False))
    result = {}
    for task in tasks:
        base, checksums = be.signature_inputs(d, recipe, task)
        result[task] = (base, [os.path.basename(p) for p, _ in checksums])
    return result, d


def test_adding_the_layer_changes_no_other_recipe(tmp_path):
    with_layer = be.BitBakeEnv(str(tmp_path / "with"))
    without = be.BitBakeEnv(str(tmp_path / "without"), with_layer=False)
    for name, text in (("plain", PLAIN), ("some-image", IMAGE)):
        files = {"hello.txt": "hello\n"}
        sig_with, d_with = signatures(with_layer, name, text, files)
        sig_without, d_without = signatures(without, name, text, files)
        assert sig_with == sig_without
        for var in ("IMAGE_FSTYPES", "IMAGE_TYPES_MASKED", "ROOTFS_POSTPROCESS_COMMAND",
                    "IMAGE_CLASSES", "INHERIT", "OVERRIDES"):
            assert d_with.getVar(var) == d_without.getVar(var)
        assert not [k for k in d_with.keys() if k.startswith("XENGUEST")]


def test_readme_and_security_as_yocto_check_layer_wants():
    readme = open(os.path.join(be.LAYER, "README.md")).read()
    assert "readme" not in readme.lower()  # a reference to another README skips the checks
    assert "maintainer" in readme.lower() and "patch" in readme.lower()
    assert re.search(r"[^@\s]+@[^@\s]+", readme)
    assert os.path.getsize(os.path.join(be.LAYER, "SECURITY.md")) > 0
    classes = "".join(open(os.path.join(be.LAYER, "classes", name)).read()
                      for name in ("xenguest-image.bbclass", "xenguest-host.bbclass"))
    for variable in re.findall(r"`(XENGUEST_[A-Z_]+)`", readme):
        if not variable.endswith("_"):
            assert variable in classes
