#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Names and addresses of the real worker node for one test environment ($TESTENV_DIR). Sourced.
#
# Everything the node creates lives in one network namespace (mr-<id>) reached from the host
# through one veth pair, in one cgroup subtree (/mr-<id> in every hierarchy) and under
# $TESTENV_DIR/node, so two developers' nodes on one machine never meet, and cluster-down removes
# exactly what cluster-up made. <id> is derived from the test-environment path.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
# shellcheck source=../lib.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/lib.sh"

# MODELROLLOUT_REAL_NODE=0 leaves the real node out (kwok nodes only, the quick path).
REAL_NODE=${MODELROLLOUT_REAL_NODE:-1}
NODE_ID=$(printf '%s' "$TESTENV_DIR" | sha1sum | cut -c1-6)
NODE_NAME=real-node
NODE_DIR="$TESTENV_DIR/node"
NODE_RUN="$TESTENV_DIR/run"
NODE_ENV="$NODE_RUN/node.env"
NETNS="mr-$NODE_ID"
HOST_VETH="mrh$NODE_ID"
CGROUP_ROOT="/mr-$NODE_ID"
CNI_BIN_DIR=${CNI_BIN_DIR:-/usr/lib/cni}
SERVICE_CIDR=10.96.0.0/16

# in_node CMD...: run CMD in the node's network namespace only. `ip netns exec` would also remount
# /sys, hiding the cgroup hierarchies that kubelet and runc need.
in_node() { nsenter --net="/run/netns/$NETNS" -- "$@"; }

# node_subnet: the second octet of the node's 10.K.0.0/16, chosen once per environment (a free one
# from 200-249, starting at a hash of the path) and remembered in $NODE_ENV.
node_subnet() {
  if [ -f "$NODE_ENV" ]; then
    sed -n 's/^NODE_K=//p' "$NODE_ENV"
    return 0
  fi
  local k=$((200 + 16#${NODE_ID:0:4} % 50)) tries=0
  while ip -4 route show | grep -q "^10\.$k\." || ip -4 addr show | grep -q "inet 10\.$k\."; do
    k=$((k + 1 > 249 ? 200 : k + 1))
    tries=$((tries + 1))
    [ $tries -lt 50 ] || { log "no free 10.K.0.0/16 for the real node"; return 1; }
  done
  echo "$k"
}

# node_addresses K: the variables every node script uses.
node_addresses() {
  local k=$1
  NODE_K=$k
  HOST_IP=10.$k.255.1          # host end of the veth: the API server listens here
  NODE_IP=10.$k.255.2          # node end: kubelet, kube-proxy NodePorts
  POD_CIDR=10.$k.0.0/24
  POD_GW=10.$k.0.1             # the cni0 bridge inside the node namespace
}
