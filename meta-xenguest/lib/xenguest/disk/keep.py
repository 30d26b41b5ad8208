"""Which partitions an update of a guest keeps: the guest's disk layout and the new
image's, compared.

A partition the new image marks ``keep`` (``DISK_KEEP``) keeps its data when
the guest already has it: it must then be the same partition — same place,
same size, same filesystem — in both layouts, or the update is refused (its
data would not fit the new layout).  One the guest does not have yet is new:
it is made from the image like any other partition.  A partition the guest
keeps but the new image does not would be re-provisioned: its data would be
lost, which only a forced update does.
"""

from dataclasses import dataclass, field
from typing import List

from .build import MIB, PlannedPartition, plan_disk
from .config import DiskConfig
from .regions import Range


@dataclass
class KeptLayout:
    """The outcome of comparing a guest's layout (old) with an image's (new)."""

    #: The guest's partitions whose bytes stay where they are.
    kept: List[PlannedPartition] = field(default_factory=list)
    #: Partitions the guest keeps and the image does not: re-provisioned if forced.
    dropped: List[int] = field(default_factory=list)
    #: Why a partition the image keeps cannot keep the guest's data.
    conflicts: List[str] = field(default_factory=list)

    @property
    def ranges(self) -> List[Range]:
        """(start, length) of the kept partitions, in bytes."""
        return [(p.start, p.size) for p in self.kept]

    @property
    def numbers(self) -> List[int]:
        return [p.number for p in self.kept]


def _where(part: PlannedPartition) -> str:
    return f"at {part.start // MIB} MiB, {part.size // MIB} MiB long"


def compare(old: DiskConfig, new: DiskConfig, what: str = "the guest") -> KeptLayout:
    """Compare the guest's disk *old* with the image's *new* (both with a disk);
    *what* names the guest (or the image it was made from) in messages."""
    result = KeptLayout()
    old_plan, new_plan = plan_disk(old), plan_disk(new)
    old_parts = {p.number: p for p in old_plan.partitions} if old_plan else {}
    new_parts = {p.number: p for p in new_plan.partitions} if new_plan else {}
    for number in sorted(new.partitions):
        if not new.partitions[number].keep or number not in old_parts:
            continue
        mine, theirs = old_parts[number], new_parts[number]
        if (mine.start, mine.size) != (theirs.start, theirs.size):
            result.conflicts.append(
                f"partition {number} keeps its data, but the image puts it {_where(theirs)} "
                f"and {what} has it {_where(mine)}")
        elif mine.fs != theirs.fs:
            result.conflicts.append(
                f"partition {number} keeps its data, but the image formats it "
                f"{theirs.fs or 'with no filesystem'} and {what} has it "
                f"{mine.fs or 'not formatted'}")
        else:
            result.kept.append(mine)
    for number in sorted(old.partitions):
        if old.partitions[number].keep and not (
                number in new.partitions and new.partitions[number].keep):
            result.dropped.append(number)
    return result
