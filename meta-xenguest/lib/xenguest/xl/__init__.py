"""The xl domain configuration: libxlu's grammar and Xen's table of known keys.

* :mod:`.config` — parse, edit and write guest.cfg and guest.d/ fragments,
  keeping comments and layout byte-identical;
* :mod:`.keys` — the keys xl knows (from Xen 4.17's ``xl_parse.c``);
* :mod:`.final` — the configuration a host starts a guest with, made from the
  image's: its name, disk, network interface and host file paths.

Imports: the foundations.
"""
