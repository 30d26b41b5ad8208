"""The reference pages in docs/ are the commands' own --help texts."""

import os
import sys

import pytest

from xenguest.cli.docs import page

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(sys.version_info < (3, 10), reason="argparse's help layout changed in 3.10")
@pytest.mark.parametrize("tool", ["mkimage", "manager"])
def test_reference_page_matches_the_help_texts(tool):
    with open(os.path.join(ROOT, "docs", f"xenguest-{tool}.md"), encoding="utf-8") as f:
        assert f.read() == page(tool), (
            f"regenerate: cd meta-xenguest/lib && python3 -m xenguest.cli.docs {tool} "
            f"> ../../docs/xenguest-{tool}.md")
