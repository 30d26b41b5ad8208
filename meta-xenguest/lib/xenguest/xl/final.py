"""The xl configuration a host starts a guest with, made from the image's own.

xenguest-manager writes it at each start (:mod:`xenguest.manager.guestcfg`),
the meta-virtualization bundle class at build time (:mod:`xenguest.bitbake.mvirt`):
``guest.cfg`` followed by the ``guest.d/`` fragments in sorted order, merged as
xl reads them, then

* ``name`` is the guest name;
* ``disk`` is the host's disk for the guest, when it has one (it replaces any
  ``disk`` of the image; without one the image's own is kept);
* ``vif`` is the host's one network interface for the guest, when it gives one
  (else the image's own ``vif``, if any, is kept);
* every string value starting with ``files/`` becomes the host path of that file.
"""

from typing import Callable, Dict, List, Optional

from . import config as xlcfg

FILES_PREFIX = "files/"


def xl_disk_spec(target: str) -> str:
    """The xl disk specification of a raw disk at *target* (``target=`` must be last)."""
    return f"format=raw, vdev=xvda, access=rw, target={target}"


def _host_paths(value: xlcfg.Value, host_path: Callable[[str], str]) -> xlcfg.Value:
    if isinstance(value, str) and value.startswith(FILES_PREFIX):
        return host_path(value)
    if isinstance(value, list):
        return [_host_paths(item, host_path) for item in value]
    return value


def final_values(documents: List[xlcfg.XlConfig], name: str,
                 host_path: Callable[[str], str], disk_target: Optional[str],
                 vif: Optional[str]) -> Dict[str, xlcfg.Value]:
    """The merged settings guest *name* is started with; *host_path* maps an image
    path (``files/kernel``) to the file's path on the host."""
    merged = xlcfg.merge(documents)
    values = {key: _host_paths(value, host_path) for key, value in merged.items()}
    values["name"] = name
    if disk_target:
        values["disk"] = [xl_disk_spec(disk_target)]
    if vif is not None:
        values["vif"] = [vif]
    return values


def render_config(values: Dict[str, xlcfg.Value], source: str, header: str) -> str:
    """*values* as an xl configuration file, after the comment lines *header*."""
    config = xlcfg.XlConfig.empty(source)
    for key, value in values.items():
        config.set(key, value)
    return header + config.render()
