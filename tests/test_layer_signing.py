"""xenguest-image signing images at build time, through the real BitBake task runner."""

import os
import shutil

import pytest

import bitbake_env as be
from mkimage_util import mkimage
from test_layer_image import build, guest, make_env, output


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return make_env(tmp_path_factory)


def signing_settings(pki, key=None) -> str:
    return (f'XENGUEST_IMAGE_SIGN_KEY = "{key or pki.key("signer")}"\n'
            f'XENGUEST_IMAGE_SIGN_CERT = "{pki.cert("signer")}"\n'
            f'XENGUEST_IMAGE_SIGN_CHAIN = "{pki.cert("intermediate")}"\n')


def test_signed_build(env, pki):
    recipe = guest(env, "guest-signed", signing_settings(pki))
    d, logs = build(env, recipe)
    assert "openssl-native" in d.getVar("DEPENDS").split()
    assert "openssl-native:do_populate_sysroot" in \
        d.getVarFlag("do_image_xenguest", "depends").split()
    path, _ = output(d)
    result = mkimage("verify", path, "--keyring", pki.cert("root"))
    assert result.rc == 0, result.err
    assert "signed by CN=Image Signer" in result.out
    log = logs["do_image_xenguest"]
    assert "xenguest: signed by CN=Image Signer" in log
    assert pki.key("signer") not in log


def test_unsigned_build_does_not_need_openssl(env):
    d = env.parse(guest(env, "guest-unsigned", ""))
    assert "openssl-native" not in (d.getVar("DEPENDS") or "").split()
    assert "openssl-native" not in (d.getVarFlag("do_image_xenguest", "depends") or "")


def test_key_path_stays_out_of_the_signature(env, pki, tmp_path):
    moved = str(tmp_path / "elsewhere.key")
    shutil.copy(pki.key("signer"), moved)
    recipe = guest(env, "guest-keysig", signing_settings(pki))
    base1, sums1 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    guest(env, "guest-keysig", signing_settings(pki, key=moved))
    base2, sums2 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    assert base2 == base1 and sums2 == sums1
    assert pki.cert("signer") in [path for path, _ in sums1]
    assert all(pki.key("signer") not in path and moved not in path for path, _ in sums1)
    # The certificate's content is an input: a new certificate rebuilds the image.
    cert = str(tmp_path / "cert.pem")
    shutil.copy(pki.cert("signer"), cert)
    guest(env, "guest-keysig", signing_settings(pki).replace(pki.cert("signer"), cert))
    _, sums3 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    with open(cert, "a") as f:
        f.write("\n")
    _, sums4 = be.signature_inputs(env.parse(recipe), recipe, "do_image_xenguest")
    assert sums3 != sums4


@pytest.mark.parametrize("settings, message", [
    ('XENGUEST_IMAGE_SIGN_CERT = "/x/cert.pem"\n',
     "XENGUEST_IMAGE_SIGN_CERT is set but XENGUEST_IMAGE_SIGN_KEY is not"),
    ('XENGUEST_IMAGE_SIGN_KEY = "k.pem"\nXENGUEST_IMAGE_SIGN_CERT = "/x/c.pem"\n',
     "XENGUEST_IMAGE_SIGN_KEY: must be an absolute path"),
    ('XENGUEST_IMAGE_SIGN_KEY = "/k.pem"\nXENGUEST_IMAGE_SIGN_CERT = "/nonexistent/c.pem"\n',
     'XENGUEST_IMAGE_SIGN_CERT = "/nonexistent/c.pem": no such file'),
])
def test_wrong_settings_stop_the_parse(env, settings, message):
    recipe = guest(env, "guest-badsign", settings)
    assert message in be.parse_failure(env, recipe)


def test_missing_key_fails_the_task(env, pki, tmp_path):
    recipe = guest(env, "guest-nokey", signing_settings(pki, key=str(tmp_path / "gone.key")))
    with pytest.raises(AssertionError) as failure:
        build(env, recipe)
    assert "XENGUEST_IMAGE_SIGN_KEY: the key file does not exist" in str(failure.value)
    assert str(tmp_path / "gone.key") not in str(failure.value)
    assert os.path.exists(env.root)
