"""The xenguest-tools recipe's sources: the library's own files, from this layer."""

import os
from typing import Any


def tools_src_uri(d: Any) -> str:
    """SRC_URI entries for the library's sources, from the layer next to the recipe.

    Every module is marked as a parse dependency, not the folders: Python
    writes ``__pycache__`` into those folders when the library is first
    imported, which would otherwise make BitBake parse the recipe again in
    every command (and, on BitBake 2.8, fail ``bitbake -S`` with "Basehash
    mismatch").  A module cannot be added or removed without editing one that
    imports it, so the recipe is still parsed again when the list changes.
    """
    import bb.parse

    layer = os.path.normpath(os.path.join(d.getVar("FILE_DIRNAME"), "..", ".."))
    entries = []
    for root, dirs, files in os.walk(os.path.join(layer, "lib", "xenguest")):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__")))
        rel = os.path.relpath(root, layer)
        for name in sorted(f for f in files if f.endswith(".py")):
            bb.parse.mark_dependency(d, os.path.join(root, name))
            entries.append(f"file://{rel}/{name};subdir=${{BP}}")
    return " ".join(entries)
