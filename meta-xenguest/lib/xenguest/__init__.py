"""xenguest: build, inspect and deploy xenguest images (one Xen guest in one file).

The library is built in floors; a module imports only from its own package
and from floors below it (``tests/test_architecture.py`` holds every module to
that, and to having no import cycle).  From the bottom:

1. the foundations, the modules of this package itself: :mod:`.errors` (the
   one family of user errors), :mod:`.problems` (findings of a check),
   :mod:`.digits`, :mod:`.fsutil`, :mod:`.locking`, :mod:`.shellvars`
   (params.cfg and disk.cfg read without a shell) and :mod:`.programs`
   (running the host's programs);
2. the formats: :mod:`.xl` (the xl configuration grammar), :mod:`.format`
   (the image on disk: tar I/O, layout, manifest, signatures, the image
   model) and :mod:`.disk` (the disk description, and building a disk from it);
3. :mod:`.operations`: create, update, check, pack, extract, the dumps, and the
   edits named like the command-line options;
4. the front ends of the operations: :mod:`.bitbake` (the layer's classes and
   recipes), :mod:`.manager` (the host manager);
5. :mod:`.cli`: the ``xenguest-mkimage`` and ``xenguest-manager`` commands.

docs/architecture.md draws the same floors, with the data flow of ``create``
and of a manager ``start``.

Imports: nothing but the standard library (the foundations import each other).
"""

__version__ = "0.1.0"
