/*
 * LD_PRELOAD stand-in for the few libxenctrl / libxenstore calls that
 * `xl -N create` (a dry run) makes before it parses a domain config.
 * With it, the real xl parser runs on a machine without a hypervisor.
 * Signatures follow Xen 4.17's xenctrl.h / xenstore.h; handles are opaque.
 * Built by tests/xl_tool.py; used only by the test suite.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

static int handle; /* any non-NULL pointer will do as a handle */

void *xc_interface_open(void *logger, void *dombuild_logger, unsigned flags)
{ (void)logger; (void)dombuild_logger; (void)flags; return &handle; }
int xc_interface_close(void *xch) { (void)xch; return 0; }

void *xs_open(unsigned long flags) { (void)flags; return &handle; }
void xs_close(void *xsh) { (void)xsh; }
int xs_fileno(void *xsh) { (void)xsh; return 0; }
void xs_daemon_destroy_postfork(void *xsh) { (void)xsh; }

/* XENVER_* commands: 0 version, 1 extraversion, 2 compile_info,
 * 3 capabilities, 4 changeset, 5 platform_parameters, 7 pagesize,
 * 9 commandline, 10 build_id.  String results are written empty. */
int xc_version(void *xch, int cmd, void *arg)
{
    (void)xch;
    switch (cmd) {
    case 0: return (4 << 16) | 17;
    case 1: case 3: case 4: case 9: *(char *)arg = '\0'; return 0;
    case 2: memset(arg, 0, 64 + 16 + 32 + 32); return 0;
    case 5: memset(arg, 0, sizeof(uint64_t)); return 0;
    case 7: return 4096;
    default: return 0; /* 10: no build id */
    }
}

int xc_get_max_cpus(void *xch) { (void)xch; return 2; }
int xc_get_online_cpus(void *xch) { (void)xch; return 2; }
int xc_get_max_nodes(void *xch) { (void)xch; return 1; }

/* Layout of struct xen_sysctl_physinfo (public/sysctl.h). */
struct physinfo {
    uint32_t threads_per_core, cores_per_socket, nr_cpus, max_cpu_id;
    uint32_t nr_nodes, max_node_id, cpu_khz, capabilities;
    uint32_t arch_capabilities, pad;
    uint64_t total_pages, free_pages, scrub_pages, outstanding_pages, max_mfn;
    uint32_t hw_cap[8];
};

int xc_physinfo(void *xch, struct physinfo *info)
{
    (void)xch;
    memset(info, 0, sizeof(*info));
    info->threads_per_core = 1;
    info->cores_per_socket = 2;
    info->nr_cpus = 2;
    info->max_cpu_id = 1;
    info->nr_nodes = 1;
    info->cpu_khz = 1000000;
    /* hvm, pv, hap, shadow, gnttab v1 and v2 */
    info->capabilities = (1u << 0) | (1u << 1) | (1u << 3) | (1u << 4)
                         | (1u << 8) | (1u << 9);
    info->total_pages = info->free_pages = 1u << 20; /* 4 GiB */
    info->max_mfn = (1u << 20) - 1;
    return 0;
}

long xc_memory_op(void *xch, unsigned int cmd, void *arg, size_t len)
{ (void)xch; (void)cmd; (void)arg; (void)len; return 0; }
long xc_sharing_freed_pages(void *xch) { (void)xch; return 0; }
long xc_sharing_used_frames(void *xch) { (void)xch; return 0; }
