#!/bin/sh
# init.post: runs on the host after the guest has started.
echo "xenguest $1: started"
