"""BitBake glue: what the layer's classes and recipes call, with the datastore ``d``.

* :mod:`.settings` — reading the build variables (one clear error each);
* :mod:`.plan` — the XENGUEST_IMAGE_* variables turned into image edits;
* :mod:`.image` — the xenguest-image class: defaults, task flags, the task;
* :mod:`.host` — the xenguest-host class: guest images in a host rootfs;
* :mod:`.sign` — signing at build time;
* :mod:`.tools` — the xenguest-tools recipe's sources.

BitBake's ``bb`` is imported only inside the functions that need it.

Imports: the foundations, xl, format, disk, operations.
"""
