"""Problems found by validation (``check``): errors and warnings with a location."""

from dataclasses import dataclass
from typing import Dict, Iterable, List

ERROR = "error"
WARNING = "warning"
NOTE = "note"


@dataclass(frozen=True)
class Problem:
    """One finding of a validation.

    *location* names where it is (``guest.cfg:4``, ``disk.cfg``, ``files/kernel``);
    *message* says what is wrong, in one line.
    """

    severity: str
    location: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity}: {self.location}: {self.message}"

    def as_dict(self) -> Dict[str, str]:
        return {"severity": self.severity, "location": self.location, "message": self.message}


def error(location: str, message: str) -> Problem:
    return Problem(ERROR, location, message)


def warning(location: str, message: str) -> Problem:
    return Problem(WARNING, location, message)


def note(location: str, message: str) -> Problem:
    return Problem(NOTE, location, message)


def has_errors(problems: Iterable[Problem]) -> bool:
    return any(p.severity == ERROR for p in problems)


def errors_only(problems: Iterable[Problem]) -> List[Problem]:
    return [p for p in problems if p.severity == ERROR]
