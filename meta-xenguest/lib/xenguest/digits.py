"""Numbers written as text: ASCII digits only.

``int`` reads the digits of every script (``'١٠٠'`` is 100) and ``isdigit``
also accepts superscripts that ``int`` then refuses (``'²'``); ``float`` takes
``'1_0'``, ``'1e3'`` and ``'nan'``.  Every number a user writes (options,
settings, members of an image) is read with these instead.
"""

import re
from typing import Optional

_WHOLE = re.compile(r"[0-9]+")
_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def whole_number(text: str) -> Optional[int]:
    """The value of *text* if it is a whole number in ASCII digits, else None."""
    return int(text) if _WHOLE.fullmatch(text) else None


def decimal_number(text: str) -> Optional[float]:
    """The value of *text* if it is ASCII digits with an optional fraction, else None."""
    return float(text) if _DECIMAL.fullmatch(text) else None
