"""disk.cfg: sizes, partitions, compatibility with the earlier tool, validation."""

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from xenguest.disk.compression import COMPRESSIONS
from xenguest.disk.config import (
    CONTENT_SUFFIXES,
    FILESYSTEMS,
    MAX_SIZE_MIB,
    DiskConfig,
    Partition,
    check_content_name,
    check_device,
    content_compression,
    content_kind,
    format_size,
    parse_size,
)
from xenguest.errors import DiskConfigError
from xenguest.problems import ERROR, WARNING
from xenguest.shellvars import ShellVarFile

ANCESTOR_DISK = 'DISK_SIZE="4000M"\nDISK_DEVICE=""\nDISK_PART1="4:ext4:rootfs.tar.gz"\n'


def vars_of(text: str) -> ShellVarFile:
    return ShellVarFile.parse(text, "disk.cfg")


def disk_of(text: str) -> DiskConfig:
    return DiskConfig.from_vars(vars_of(text))


def found(problems):
    return [(p.severity, p.location, p.message) for p in problems]


# -- sizes -----------------------------------------------------------------------


@pytest.mark.parametrize("text, mib", [
    ("4", 4000), ("4G", 4000), ("4g", 4000), ("4000M", 4000), ("4000m", 4000),
    ("0", 0), ("0M", 0), ("512M", 512), ("1", 1000), ("007M", 7),
    ("67108M", 67108), (f"{MAX_SIZE_MIB}M", MAX_SIZE_MIB), ("67108G", 67108000),
])
def test_parse_size(text, mib):
    assert parse_size(text) == mib


@pytest.mark.parametrize("text, words", [
    ("", ["empty size"]),
    ("-1", ["'-1'", "negative"]),
    ("-4G", ["'-4G'", "negative"]),
    ("1.5G", ["'1.5G'", "fractional"]),
    ("1,5", ["'1,5'", "fractional"]),
    ("abc", ["'abc'", "whole number"]),
    ("4T", ["'4T'"]),
    ("4 G", ["'4 G'"]),
    (" 4", ["' 4'"]),
    ("4\n", ["'4\\n'"]),
    ("G", ["'G'"]),
    ("\u0664", ["'\u0664'"]),
    ("4MB", ["'4MB'"]),
    (f"{MAX_SIZE_MIB + 1}M", ["64 TiB"]),
    ("67109G", ["'67109G'", "64 TiB"]),
    ("9" * 40, ["64 TiB"]),
])
def test_parse_size_refuses(text, words):
    with pytest.raises(DiskConfigError) as caught:
        parse_size(text)
    for word in words:
        assert word in str(caught.value)


def test_format_size():
    assert format_size(4000) == "4000M"
    assert format_size(0) == "0"
    for bad in (-1, MAX_SIZE_MIB + 1):
        with pytest.raises(DiskConfigError):
            format_size(bad)


@given(st.integers(min_value=0, max_value=MAX_SIZE_MIB))
def test_size_round_trip(mib):
    assert parse_size(format_size(mib)) == mib


@given(st.integers(min_value=0, max_value=MAX_SIZE_MIB // 1000))
def test_bare_number_g_and_thousand_m_are_the_same(n):
    assert parse_size(str(n)) == parse_size(f"{n}G") == parse_size(f"{n * 1000}M") == n * 1000


# -- content ---------------------------------------------------------------------


@pytest.mark.parametrize("name, kind, compression", [
    ("rootfs.tar", "tar", ""), ("rootfs.tar.gz", "tar", "gz"), ("a.tar.bz2", "tar", "bz2"),
    ("a.tar.xz", "tar", "xz"), ("boot.img", "img", ""), ("boot.img.gz", "img", "gz"),
    ("v1.2_x+y-z.img.bz2", "img", "bz2"), ("rootfs.tar.zst", "tar", "zst"),
    ("a.img.xz", "img", "xz"), ("a.img.zst", "img", "zst"),
])
def test_content_kinds(name, kind, compression):
    assert check_content_name(name) == name
    assert content_kind(name) == kind
    assert content_compression(name) == compression


def test_content_suffixes_are_exactly_the_known_list():
    assert CONTENT_SUFFIXES == (
        ".tar", ".tar.gz", ".tar.bz2", ".tar.xz", ".tar.zst",
        ".img", ".img.gz", ".img.bz2", ".img.xz", ".img.zst",
    )
    assert {content_compression("a" + s) for s in CONTENT_SUFFIXES} == set(COMPRESSIONS)
    assert FILESYSTEMS == ("ext2", "ext3", "ext4", "vfat", "swap")


@pytest.mark.parametrize("name", [
    "rootfs.tgz", "a.img.lz4", "a.zip", "a.tar.zstd", "a", "dir/a.tar", "../a.tar", "a..b.tar", ".tar",
    ".hidden.tar", "-rf.tar", "a b.tar", "a:b.tar", "a$b.tar", "é.tar", "a.tar\n", "",
    "/abs.tar",
])
def test_bad_content_names(name):
    with pytest.raises(DiskConfigError, match="invalid partition content"):
        check_content_name(name)


# -- partitions ------------------------------------------------------------------


def test_partition_parse_and_spec():
    part = Partition.parse(1, "4:ext4:rootfs.tar.gz")
    assert part == Partition(1, 4000, "ext4", "rootfs.tar.gz")
    assert part.spec() == "4000M:ext4:rootfs.tar.gz"
    assert Partition.parse(2, "512M::") == Partition(2, 512, "", "")
    assert Partition.parse(3, "1G:none:boot.img").fs == ""
    assert Partition.parse(3, "1G:none:boot.img").spec() == "1000M::boot.img"
    assert Partition.parse_option("4:2G:swap:") == Partition(4, 2000, "swap", "")


@pytest.mark.parametrize("number, spec, words", [
    (0, "1::", ["must be 1 to 4", "got 0"]),
    (5, "1::", ["must be 1 to 4", "got 5"]),
    (1, "0:ext4:", ["size must be above 0"]),
    (1, "x:ext4:", ["invalid size 'x'"]),
    (1, "1:btrfs:", ["invalid filesystem 'btrfs'"]),
    (1, "1:EXT4:", ["invalid filesystem 'EXT4'"]),
    (1, "1:ext4", ["expected SIZE:FS:CONTENT", "'1:ext4'"]),
    (1, "1:ext4:a.tar:x", ["expected SIZE:FS:CONTENT"]),
    (1, "", ["expected SIZE:FS:CONTENT"]),
    (1, "1:ext4:a.zip", ["invalid partition content 'a.zip'"]),
    (1, "1:ext4:../a.tar", ["invalid partition content '../a.tar'"]),
])
def test_partition_parse_refuses(number, spec, words):
    with pytest.raises(DiskConfigError) as caught:
        Partition.parse(number, spec)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("text, words", [
    ("5:1:ext4:a.tar", ["invalid partition '5:1:ext4:a.tar'", "1 to 4"]),
    ("1:0:ext4:a.tar", ["invalid partition '1:0:ext4:a.tar'", "above 0"]),
    ("1:4:ext4", ["expected NUM:SIZE:FS:CONTENT"]),
    ("x:4:ext4:", ["expected NUM:SIZE:FS:CONTENT"]),
    (":4:ext4:", ["expected NUM:SIZE:FS:CONTENT"]),
    ("1:4:ext4:a.tar:b", ["expected NUM:SIZE:FS:CONTENT"]),
])
def test_partition_option_refuses(text, words):
    with pytest.raises(DiskConfigError) as caught:
        Partition.parse_option(text)
    for word in words:
        assert word in str(caught.value)


SIZES = st.integers(min_value=1, max_value=MAX_SIZE_MIB)
CONTENTS = st.one_of(
    st.just(""),
    st.builds(
        lambda stem, suffix: stem + suffix,
        st.from_regex(r"[A-Za-z0-9_+][A-Za-z0-9_+-]{0,15}", fullmatch=True),
        st.sampled_from(CONTENT_SUFFIXES),
    ),
)
PARTITIONS = st.builds(
    Partition, st.integers(min_value=1, max_value=4), SIZES,
    st.sampled_from(("",) + FILESYSTEMS), CONTENTS, st.booleans(),
)


@given(PARTITIONS)
def test_partition_spec_round_trip(part):
    assert Partition.parse(part.number, part.spec()) == replace(part, keep=False)
    option = f"{part.number}:{part.spec()}" + (":keep" if part.keep else "")
    assert Partition.parse_option(option) == part


def test_kept_partition_option_and_disk_keep():
    assert Partition.parse_option("2:8M:ext4::keep") == Partition(2, 8, "ext4", "", keep=True)
    assert Partition.parse_option("2:8M:ext4:data.tar:keep").content == "data.tar"
    variables = vars_of(ANCESTOR_DISK)
    disk = DiskConfig.from_vars(variables)
    disk.partitions[2] = Partition.parse_option("2:8M:ext4::keep")
    disk.to_vars(variables)
    # the partition stays three fields (SIZE:FS:CONTENT) for older readers; DISK_KEEP says
    assert variables.render() == ANCESTOR_DISK + 'DISK_PART2="8M:ext4:"\nDISK_KEEP="2"\n'
    assert DiskConfig.from_vars(vars_of(variables.render())) == disk
    disk.partitions[2].keep = False
    disk.to_vars(variables)
    assert variables.render() == ANCESTOR_DISK + 'DISK_PART2="8M:ext4:"\n'
    # an equivalent DISK_KEEP keeps its spelling
    text = ANCESTOR_DISK + 'DISK_PART2="8M::"\nDISK_KEEP=" 2  1 2"\n'
    variables = vars_of(text)
    DiskConfig.from_vars(variables).to_vars(variables)
    assert variables.render() == text


@pytest.mark.parametrize("value, words", [
    ("3", ["DISK_KEEP: partition 3 is not defined"]),
    ("x", ["DISK_KEEP: 'x' is not a partition number (1 to 4)"]),
    ("1,2", ["DISK_KEEP: '1,2' is not a partition number"]),
    ("5", ["DISK_KEEP: '5' is not a partition number"]),
])
def test_disk_keep_refuses(value, words):
    with pytest.raises(DiskConfigError) as caught:
        DiskConfig.from_vars(vars_of(ANCESTOR_DISK + f'DISK_KEEP="{value}"\n'))
    for word in words:
        assert word in str(caught.value)


# -- disk.cfg --------------------------------------------------------------------


def test_reads_ancestor_disk_cfg_and_finds_it_valid():
    disk = disk_of(ANCESTOR_DISK)
    assert disk == DiskConfig(4000, "", {1: Partition(1, 4000, "ext4", "rootfs.tar.gz")})
    assert disk.problems({"rootfs.tar.gz"}) == []
    assert disk.problems(None) == []


def test_defaults_mean_no_disk():
    assert disk_of("") == DiskConfig()
    assert disk_of('DISK_SIZE="0"\nDISK_DEVICE=""\n') == DiskConfig()
    assert disk_of('DISK_SIZE=""\n').size_mib == 0
    assert disk_of('DISK_PART2=""\n').partitions == {}
    assert DiskConfig().problems([]) == []


@pytest.mark.parametrize("text, prefix, words", [
    ('DISK_SIZE="big"\n', "disk.cfg: DISK_SIZE: ", ["'big'"]),
    ('DISK_SIZE="-4"\n', "disk.cfg: DISK_SIZE: ", ["negative"]),
    ('DISK_PART2="4:xfs:"\n', "disk.cfg: DISK_PART2: ", ["'xfs'"]),
    ('DISK_PART1="4:ext4:../etc/shadow.tar"\n', "disk.cfg: DISK_PART1: ", ["content"]),
    ('DISK_PART5="4::"\n', "disk.cfg: DISK_PART5: ", ["1 to 4"]),
    ('DISK_PART0="4::"\n', "disk.cfg: DISK_PART0: ", ["1 to 4"]),
    ('DISK_PART01="4::"\n', "disk.cfg: DISK_PART01: ", ["1 to 4"]),
    ("DISK_DEVICE='/dev/a;b'\n", "disk.cfg: DISK_DEVICE: ", ["';'"]),
])
def test_from_vars_errors_name_the_key(text, prefix, words):
    with pytest.raises(DiskConfigError) as caught:
        disk_of(text)
    assert str(caught.value).startswith(prefix)
    for word in words:
        assert word in str(caught.value)


@pytest.mark.parametrize("device", ["", "/dev/sda", "/dev/vg0/guest1", "/dev/mapper/vg-lv",
                                    "/dev/disk/by-path/pci-0000:00:1f.2-ata-1"])
def test_device_accepted(device):
    assert check_device(device) == device


@pytest.mark.parametrize("device", ["/dev/a b", "/dev/a\tb", "/dev/'a", '/dev/"a', "/dev/$X",
                                    "/dev/`id`", "/dev/a;b", "/dev/a&b", "/dev/a|b", "/dev/a\x01"])
def test_device_refused(device):
    with pytest.raises(DiskConfigError, match="invalid disk device"):
        check_device(device)


def test_unknown_keys_are_kept_and_unchanged_values_keep_their_spelling():
    text = "# disk\n" + ANCESTOR_DISK + 'OTHER="x"\n'
    variables = vars_of(text)
    disk = DiskConfig.from_vars(variables)
    disk.to_vars(variables)
    assert variables.render() == text
    disk.partitions[2] = Partition.parse_option("2:1G:swap:")
    disk.size_mib = 5000
    disk.to_vars(variables)
    assert variables.render() == (
        '# disk\nDISK_SIZE="5000M"\nDISK_DEVICE=""\nDISK_PART1="4:ext4:rootfs.tar.gz"\n'
        'OTHER="x"\nDISK_PART2="1000M:swap:"\n'
    )
    assert DiskConfig.from_vars(vars_of(variables.render())) == disk


def test_to_vars_removes_absent_partitions_and_writes_defaults():
    variables = vars_of(ANCESTOR_DISK + 'DISK_PART3="1::"\n')
    DiskConfig().to_vars(variables)
    assert variables.render() == 'DISK_SIZE="0"\nDISK_DEVICE=""\n'
    fresh = ShellVarFile.new("disk.cfg")
    DiskConfig(4000, "/dev/vg/g", {1: Partition(1, 4000, "ext4", "rootfs.tar.gz")}).to_vars(fresh)
    assert fresh.render() == (
        'DISK_SIZE="4000M"\nDISK_DEVICE="/dev/vg/g"\nDISK_PART1="4000M:ext4:rootfs.tar.gz"\n'
    )


@pytest.mark.parametrize("disk, words", [
    (DiskConfig(100, "", {1: Partition(2, 10, "", "")}), ["partition 2 is stored as partition 1"]),
    (DiskConfig(100, "", {1: Partition(1, 0, "", "")}), ["size must be above 0"]),
    (DiskConfig(100, "", {1: Partition(1, 10, "xfs", "")}), ["partition 1", "'xfs'"]),
    (DiskConfig(100, "", {1: Partition(1, 10, "none", "")}), ["partition 1", "'none'"]),
    (DiskConfig(100, "", {1: Partition(1, 10, "", "a/b.tar")}), ["partition 1", "content"]),
    (DiskConfig(100, "a b", {}), ["invalid disk device"]),
    (DiskConfig(-1, "", {}), ["invalid size"]),
])
def test_to_vars_refuses_what_disk_cfg_cannot_hold(disk, words):
    variables = vars_of(ANCESTOR_DISK)
    with pytest.raises(DiskConfigError) as caught:
        disk.to_vars(variables)
    for word in words:
        assert word in str(caught.value)
    assert variables.render() == ANCESTOR_DISK


@settings(max_examples=100)
@given(st.integers(min_value=0, max_value=MAX_SIZE_MIB),
       st.lists(PARTITIONS, max_size=4, unique_by=lambda p: p.number))
def test_disk_config_round_trip(size, parts):
    disk = DiskConfig(size, "/dev/vg0/lv", {p.number: p for p in parts})
    variables = ShellVarFile.new("disk.cfg", "Xenguest disk")
    disk.to_vars(variables)
    assert DiskConfig.from_vars(vars_of(variables.render())) == disk


# -- problems --------------------------------------------------------------------


def test_partitions_filling_the_disk_exactly_are_valid():
    disk = disk_of('DISK_SIZE="4G"\nDISK_PART1="1000M:vfat:"\nDISK_PART2="3:ext4:r.tar"\n')
    assert disk.problems(["r.tar"]) == []


def test_partitions_larger_than_disk():
    disk = disk_of('DISK_SIZE="4000M"\nDISK_PART1="4:ext4:"\nDISK_PART2="1M::"\n')
    assert found(disk.problems(None)) == [
        (ERROR, "disk.cfg", "the partitions need 4001M but DISK_SIZE is 4000M"),
    ]


def test_partitions_without_disk():
    disk = disk_of('DISK_SIZE="0"\nDISK_PART1="4:ext4:"\n')
    assert found(disk.problems(None)) == [
        (ERROR, "disk.cfg", "partitions are defined but DISK_SIZE is 0 (no disk)"),
    ]


def test_content_problems():
    disk = disk_of(
        'DISK_SIZE="10"\n'
        'DISK_PART1="1:ext4:rootfs.tar.gz"\n'
        'DISK_PART2="1::rootfs.tar.gz"\n'
        'DISK_PART3="1:swap:data.tar"\n'
        'DISK_PART4="1:ext4:boot.img"\n'
    )
    assert found(disk.problems(["rootfs.tar.gz", "boot.img", "spare.img"])) == [
        (ERROR, "disk.cfg: DISK_PART2",
         "content rootfs.tar.gz is already used by DISK_PART1"),
        (ERROR, "disk.cfg: DISK_PART2", "tar content rootfs.tar.gz needs a filesystem to "
         "unpack into, but the partition has no filesystem"),
        (ERROR, "disk.cfg: DISK_PART3", "content data.tar is not in disk/"),
        (ERROR, "disk.cfg: DISK_PART3", "tar content data.tar needs a filesystem to "
         "unpack into, but the partition has swap"),
        (WARNING, "disk.cfg: DISK_PART4", "image content boot.img is written raw over the "
         "partition: the ext4 format is replaced by it"),
        (WARNING, "disk.cfg", "disk/spare.img is not used by any partition"),
    ]
    assert [p.severity for p in disk.problems(None)] == [ERROR, ERROR, ERROR, WARNING]


def test_raw_image_on_unformatted_partition_is_clean():
    disk = disk_of('DISK_SIZE="2G"\nDISK_PART1="2G::boot.img.bz2"\n')
    assert disk.problems(["boot.img.bz2"]) == []


def test_as_dict():
    disk = disk_of('DISK_PART2="512M:swap:"\n' + ANCESTOR_DISK)
    assert disk.as_dict() == {
        "size_mib": 4000, "size": "4000M", "device": "",
        "partitions": [
            {"number": 1, "size_mib": 4000, "size": "4000M", "fs": "ext4",
             "content": "rootfs.tar.gz", "keep": False},
            {"number": 2, "size_mib": 512, "size": "512M", "fs": "swap", "content": "",
             "keep": False},
        ],
        "prebuilt": "", "prebuilt_from": "",
    }
    assert DiskConfig().as_dict() == {"size_mib": 0, "size": "0", "device": "", "partitions": [],
                                      "prebuilt": "", "prebuilt_from": ""}
