"""The xl domain configuration: libxlu's grammar and Xen's table of known keys.

* :mod:`.config` — parse, edit and write guest.cfg and guest.d/ fragments,
  keeping comments and layout byte-identical;
* :mod:`.keys` — the keys xl knows (from Xen 4.17's ``xl_parse.c``).

Imports: the foundations.
"""
