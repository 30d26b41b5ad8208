#!/bin/sh
# init.pre: runs on the host before the guest is created; $1 is the guest name.
# A bridged guest needs the host bridge: say so early when it is missing.
if [ "${XENGUEST_NETWORK_TYPE:-bridge}" = "bridge" ] && [ ! -d /sys/class/net/xenbr0 ]; then
    echo "xenguest $1: warning: bridge xenbr0 not found on the host" >&2
fi
exit 0
