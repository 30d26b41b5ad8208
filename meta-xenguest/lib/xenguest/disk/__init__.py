"""The guest disk: its description (disk.cfg) and building it from that.

* :mod:`.config` — disk.cfg: sizes, partitions, content names;
* :mod:`.compression` — decompressed streams of partition content;
* :mod:`.build` — the partition table, filesystems and content written into a
  file or block device at byte offsets, with the host's tools (sfdisk,
  mke2fs, mkfs.vfat, mkswap): the one path that makes guest disks;
* :mod:`.populate` — a tar stream unpacked into a new ext or vfat filesystem;
* :mod:`.keep` — which partitions an update keeps (two layouts compared);
* :mod:`.regions` — the byte ranges an update replaces, saved aside and put back.

The content is read through a function handed in (the caller's image), so
this package needs no image model.

Imports: the foundations.
"""
