"""The xenguest-tools recipe's sources: the library's own files, from this layer."""

import os
from typing import Any


def tools_src_uri(d: Any) -> str:
    """SRC_URI entries for the library's sources, from the layer next to the recipe.

    The folders are marked as parse dependencies: adding or removing a module
    makes BitBake parse the recipe again.
    """
    import bb.parse

    layer = os.path.normpath(os.path.join(d.getVar("FILE_DIRNAME"), "..", ".."))
    entries = []
    for root, dirs, files in os.walk(os.path.join(layer, "lib", "xenguest")):
        dirs[:] = sorted(x for x in dirs if not x.startswith((".", "__")))
        bb.parse.mark_dependency(d, root)
        rel = os.path.relpath(root, layer)
        entries += [f"file://{rel}/{f};subdir=${{BP}}" for f in sorted(files) if f.endswith(".py")]
    return " ".join(entries)
