#!/bin/sh
# init.pre: runs on the host before the guest is created; $1 is the guest name.
# The parameters of params.cfg are in the environment: say how the guest is
# connected (xenguest-manager checks right after this stage that the host's
# bridge of that network exists).
forwards=${XENGUEST_NETWORK_PORT_FORWARD:+, host ports forwarded: $XENGUEST_NETWORK_PORT_FORWARD}
echo "xenguest $1: network ${XENGUEST_NETWORK_TYPE:-none}$forwards"
exit 0
