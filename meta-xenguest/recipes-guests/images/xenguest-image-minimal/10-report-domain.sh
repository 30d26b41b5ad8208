#!/bin/sh
# init.d: runs on the host once the guest is created (paused), before it starts.
domid=$(xl domid "$1" 2>/dev/null) || domid="?"
echo "xenguest $1: created as domain $domid"
