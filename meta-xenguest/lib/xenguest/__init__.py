"""xenguest: build, inspect and deploy xenguest images (one Xen guest in one file).

The public entry points are in :mod:`xenguest.operations` (create, update,
check, pack, extract, dumps) with edits named like the command-line options
(:mod:`xenguest.options`); the formats have their own modules: xl
configuration (:mod:`xenguest.xlcfg`), shell-variable files
(:mod:`xenguest.shellvars`), the disk description (:mod:`xenguest.disk`),
tar I/O (:mod:`xenguest.archive`) and streamed copies (:mod:`xenguest.streams`).
"""

__version__ = "0.1.0"
