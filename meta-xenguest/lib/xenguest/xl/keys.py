"""The top-level keys xl 4.17 reads from a domain configuration.

xl silently ignores a key it does not know, so a typo (``memroy = 512``) only shows up as a
guest that boots with the default. This table lets validation warn about such keys.

Source: Xen RELEASE-4.17.7, tools/xl/xl_parse.c, parse_config_data(): every key named in an
``xlu_cfg_get_string/_long/_bounded_long/_defbool/_list/_list_as_string_list`` or
``xlu_cfg_replace_string`` call on the domain config, plus ``device_model_args_pv`` and
``device_model_args_hvm`` (built by its parse_extra_args macro). Cross-checked against the
xl.cfg(5) man page of Debian's xen-utils-4.17: every top-level key it documents is here;
the table also holds keys xl reads but the page does not document (``device_model``,
``extratime``, ``firmware_override``, ``latency``, ``period``, ``slice``, ``vif2``,
``vncviewer``). Keys of xl.conf (autoballoon, lockfile, ...) are not domain keys.
"""

from typing import FrozenSet

KNOWN_KEYS: FrozenSet[str] = frozenset((
    "acpi", "acpi_firmware", "acpi_laptop_slate", "acpi_s3", "acpi_s4", "altp2m", "altp2mhvm",
    "apic", "bios", "bios_path_override", "boot", "bootloader", "bootloader_args", "builder",
    "cap", "channel", "cmdline", "cpu_weight", "cpuid", "cpus", "cpus_soft", "device_model",
    "device_model_args", "device_model_args_hvm", "device_model_args_pv",
    "device_model_override", "device_model_stubdomain_override",
    "device_model_stubdomain_seclabel", "device_model_user", "device_model_version",
    "device_tree", "disk", "display", "dm_restrict", "driver_domain", "dtdev", "e820_host",
    "extra", "extratime", "firmware", "firmware_override", "gfx_passthru", "gic_version",
    "hap", "hdtype", "hpet", "init_seclabel", "iomem", "ioports", "irqs", "kernel", "keymap",
    "latency", "localtime", "max_event_channels", "max_grant_frames", "max_grant_version",
    "max_maptrack_frames", "maxmem", "maxvcpus", "mca_caps", "memory", "mmio_hole",
    "ms_vm_genid", "msr_relaxed", "name", "nestedhvm", "nographic", "nomigrate", "nx",
    "on_crash", "on_poweroff", "on_reboot", "on_soft_reset", "on_watchdog", "oos", "opengl",
    "p9", "pae", "passthrough", "pci", "pci_msitranslate", "pci_permissive", "pci_power_mgmt",
    "pci_seize", "period", "pool", "pvcalls", "pvshim", "pvshim_cmdline", "pvshim_extra",
    "pvshim_path", "ramdisk", "rdm", "rdm_mem_boundary", "root", "rtc_timeoffset", "sdl",
    "seclabel", "serial", "shadow_memory", "slice", "smbios_firmware", "soundhw", "spice",
    "spice_clipboard_sharing", "spice_image_compression", "spice_streaming_video",
    "spiceagent_mouse", "spicedisable_ticketing", "spicehost", "spicepasswd", "spiceport",
    "spicetls_port", "spiceusbredirection", "spicevdagent", "stdvga", "stubdomain_cmdline",
    "stubdomain_kernel", "stubdomain_memory", "stubdomain_ramdisk", "tee", "timer_mode",
    "tsc_mode", "type", "usb", "usbctrl", "usbdev", "usbdevice", "usbversion", "uuid", "vcpus",
    "vdispl", "vendor_device", "vfb", "vga", "videoram", "vif", "vif2", "viridian", "vkb",
    "vkb_device", "vmtrace_buf_kb", "vnc", "vncdisplay", "vnclisten", "vncpasswd", "vncunused",
    "vncviewer", "vnuma", "vpmu", "vpt_align", "vsnd", "vtpm", "vuart", "xauthority",
    "xen_platform_pci", "xend_suspend_evtchn_compat",
))


def is_known(key: str) -> bool:
    """True if xl 4.17 reads *key* from a domain configuration."""
    return key in KNOWN_KEYS
