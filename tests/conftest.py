"""Test setup: the layer's own copy of the library is the one imported."""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LIB = os.path.join(ROOT, "meta-xenguest", "lib")
if sys.path[0] != LIB:
    sys.path.insert(0, LIB)
