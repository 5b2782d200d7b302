#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# The real worker node beside the kwok nodes: containerd + runc, CNI (bridge + host-local +
# portmap + loopback), kubelet and kube-proxy built from the pinned Kubernetes sources.
#
#   node.sh net    create the node's network namespace and veth pair, forward HOST_IP:API_PORT to
#                  the API server on 127.0.0.1; prints HOST_IP (the API server's advertise address)
#   node.sh up     certificates, containerd, kubelet, kube-proxy; wait until the node is Ready
#   node.sh down   stop every process of the node by PID, unmount, remove namespace and cgroups
#   node.sh load IMAGE...  copy images from the buildah store into the node's containerd
#
# Layout (K is chosen per test environment, see lib.sh):
#   host netns:  mrh<id> 10.K.255.1/30  (DNAT to kube-apiserver on 127.0.0.1; route 10.K.0.0/24 -> node)
#   node netns:  eth0 10.K.255.2/30, cni0 bridge 10.K.0.1/24, pods 10.K.0.0/24; routes only to the
#                host end and the Service range, no default route: nothing can leave the machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

PKI="$TESTENV_DIR/pki"
CTR_SOCK="$NODE_DIR/containerd/containerd.sock"

alive() { [ -f "$NODE_RUN/$1.pid" ] && kill -0 "$(cat "$NODE_RUN/$1.pid")" 2>/dev/null; }

need_root() {
  [ "$(id -u)" -eq 0 ] && return 0
  log "the real node needs root (network namespaces, cgroups, mounts); run as root or set MODELROLLOUT_REAL_NODE=0"
  exit 1
}

need_tools() {
  local missing=() t
  for t in containerd containerd-shim-runc-v2 runc ctr nsenter iptables conntrack; do
    command -v "$t" >/dev/null || missing+=("$t")
  done
  [ -x "$CNI_BIN_DIR/bridge" ] || missing+=("$CNI_BIN_DIR/bridge")
  for t in kubelet kube-proxy; do [ -x "$BIN_DIR/$t" ] || missing+=("$BIN_DIR/$t"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "the real node is missing: ${missing[*]} (make deps installs them; MODELROLLOUT_REAL_NODE=0 skips the node)"
  exit 1
}

# ---------------------------------------------------------------------------------------- network
cmd_net() {
  need_root
  mkdir -p "$NODE_RUN"
  local k
  k=$(node_subnet)
  node_addresses "$k"
  if ! ip netns list | grep -qw "$NETNS"; then
    ip netns add "$NETNS"
    ip link add "$HOST_VETH" type veth peer name "n$HOST_VETH"
    ip link set "n$HOST_VETH" netns "$NETNS"
    in_node ip link set "n$HOST_VETH" name eth0
    ip addr add "$HOST_IP/30" dev "$HOST_VETH"
    ip link set "$HOST_VETH" up
    in_node ip addr add "$NODE_IP/30" dev eth0
    in_node ip link set eth0 up
    in_node ip link set lo up
    # The host reaches pods (tests, Prometheus queries) through the node; it never forwards them on
    # (the host's own ip_forward is left as it is).
    ip route replace "$POD_CIDR" via "$NODE_IP" dev "$HOST_VETH"
    # Inside the node: the host end and the Service range only. No default route.
    in_node ip route replace "$SERVICE_CIDR" via "$HOST_IP" dev eth0
    in_node sysctl -qw net.ipv4.ip_forward=1
    in_node sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || true
    log "node network: netns $NETNS, host $HOST_IP <-> node $NODE_IP, pods $POD_CIDR"
  fi
  api_forward
  { echo "NODE_K=$k"; echo "NETNS=$NETNS"; echo "HOST_IP=$HOST_IP"; echo "NODE_IP=$NODE_IP"
    echo "POD_CIDR=$POD_CIDR"; echo "POD_GW=$POD_GW"; echo "NODE_NAME=$NODE_NAME"
    echo "CONTAINERD_SOCK=$CTR_SOCK"; } >"$NODE_ENV"
  echo "$HOST_IP"
}

# api_forward: the API server listens on 127.0.0.1 only (as on the kwok path); connections from the
# node to HOST_IP:API_PORT are forwarded there by one DNAT rule on the host's veth, which needs
# route_localnet on that interface. cmd_down deletes the rule by its comment.
api_forward() {
  # shellcheck source=/dev/null
  source "$NODE_RUN/ports.env"
  sysctl -qw "net.ipv4.conf.$HOST_VETH.route_localnet=1"
  local rule=(PREROUTING -i "$HOST_VETH" -d "$HOST_IP" -p tcp --dport "$API_PORT"
    -m comment --comment "modelrollout-$NODE_ID" -j DNAT --to-destination "127.0.0.1:$API_PORT")
  iptables -t nat -C "${rule[@]}" 2>/dev/null || iptables -t nat -A "${rule[@]}"
}

drop_api_forward() {
  local rule
  { iptables -t nat -S PREROUTING 2>/dev/null || true; } | { grep -- "modelrollout-$NODE_ID" || true; } |
    sed 's/^-A //' | while read -r rule; do
      # shellcheck disable=SC2086  # the rule's words, as iptables -S printed them
      eval "iptables -t nat -D $rule"
    done
}

# ---------------------------------------------------------------------------------------- cgroups
cgroup_dirs() { # every cgroup v1/v2 mount point
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts
}

make_cgroups() {
  local d
  for d in $(cgroup_dirs); do
    mkdir -p "$d$CGROUP_ROOT/system"
    if [ -f "$d/cpuset.cpus" ]; then # v1 cpuset children start empty: inherit the parent's sets
      cat "$d/cpuset.cpus" >"$d$CGROUP_ROOT/cpuset.cpus"
      cat "$d/cpuset.mems" >"$d$CGROUP_ROOT/cpuset.mems"
      cat "$d/cpuset.cpus" >"$d$CGROUP_ROOT/system/cpuset.cpus"
      cat "$d/cpuset.mems" >"$d$CGROUP_ROOT/system/cpuset.mems"
    fi
  done
}

# start NAME CMD...: start CMD inside the node (its netns, the /mr-<id>/system cgroup in every
# hierarchy) in the background and record its PID. Children (containerd's shims, containers)
# inherit the cgroups, so `down` finds every process the node started.
start() {
  local name=$1
  shift
  alive "$name" && return 0
  local procs=""
  for d in $(cgroup_dirs); do procs+=" $d$CGROUP_ROOT/system/cgroup.procs"; done
  # shellcheck disable=SC2016  # $$ and "$@" are expanded by the inner shell
  nohup bash -c 'for f in '"$procs"'; do echo $$ >"$f" 2>/dev/null || true; done; exec "$@"' _ \
    nsenter --net="/run/netns/$NETNS" -- "$@" >"$NODE_RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$NODE_RUN/$name.pid"
  log "started $name (pid $!)"
}

# ---------------------------------------------------------------------------------------- certs
sign() { # NAME SUBJECT EXT: a key and certificate signed by the cluster CA
  local name=$1 subj=$2 ext=$3
  [ -f "$PKI/$name.crt" ] && return 0
  printf '%s\n' "$ext" >"$PKI/$name.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$PKI/$name.key" -out "$PKI/$name.csr" -subj "$subj" 2>/dev/null
  openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial -days 3650 \
    -extfile "$PKI/$name.ext" -out "$PKI/$name.crt" 2>/dev/null
}

kubeconfig_for() { # NAME: a kubeconfig with NAME's client certificate
  cat >"$NODE_DIR/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: local
  cluster: {server: "https://$HOST_IP:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$PKI/$1.crt", client-key: "$PKI/$1.key"}
contexts:
- name: local
  context: {cluster: local, user: $1}
current-context: local
KC
}

# ---------------------------------------------------------------------------------------- configs
write_configs() {
  mkdir -p "$NODE_DIR"/{containerd,cni/net.d,kubelet,pod-logs}
  cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "$NODE_DIR/containerd/opt"
[plugins."io.containerd.grpc.v1.cri"]
  # Built locally by hack/images/base.sh: there is no registry to pull the sandbox image from.
  sandbox_image = "localhost/modelrollout/pause:3.10"
  # runc here lacks CAP_SYS_RESOURCE: a negative oom_score_adj fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni/net.d"
TOML
  cat >"$NODE_DIR/cni/net.d/10-modelrollout.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "modelrollout",
  "plugins": [
    {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "ranges": [[{"subnet": "$POD_CIDR", "gateway": "$POD_GW"}]],
              "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$NODE_DIR/cni/ipam"}},
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
JSON
  cat >"$NODE_DIR/kubelet/config.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
# This host has cgroups v1 (hybrid: v1 controllers, an empty v2 at /sys/fs/cgroup/unified).
# Kubernetes 1.35 refuses v1 unless told, and there is no systemd to delegate to.
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: $CGROUP_ROOT
containerRuntimeEndpoint: unix://$CTR_SOCK
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
tlsCertFile: $PKI/kubelet.crt
tlsPrivateKeyFile: $PKI/kubelet.key
# No cluster DNS and no resolver: pods reach Services by ClusterIP; no lookup can leave the machine.
resolvConf: ""
podLogsDir: $NODE_DIR/pod-logs
failSwapOn: false
serializeImagePulls: false
maxPods: 60
podCIDR: $POD_CIDR
# The disk is shared with other work: evict only when it is really full.
evictionHard: {memory.available: 200Mi, nodefs.available: 2%, imagefs.available: 2%}
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
nodeStatusUpdateFrequency: 4s
syncFrequency: 10s
fileCheckFrequency: 10s
shutdownGracePeriod: 0s
YAML
  cat >"$NODE_DIR/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection: {kubeconfig: $NODE_DIR/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: $POD_CIDR
nodePortAddresses: ["$NODE_IP/32"]
# Conntrack sysctls are read-only inside a network namespace: leave them alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {masqueradeAll: false, syncPeriod: 10s, minSyncPeriod: 0s}
YAML
}

wait_for() { # WHAT SECONDS CMD...
  local what=$1 limit=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then
      log "timed out waiting for $what; logs: $NODE_RUN/{containerd,kubelet,kube-proxy}.log"
      tail -5 "$NODE_RUN/kubelet.log" >&2 || true
      exit 1
    fi
    sleep 0.5
  done
}

ctr_() { ctr --address "$CTR_SOCK" -n k8s.io "$@"; }

# load_images ARCHIVE...: import docker-archive tarballs into the node's containerd (k8s.io ns).
load_images() {
  local f
  for f in "$@"; do ctr_ images import --no-unpack=false "$f" >/dev/null; done
}

cmd_up() {
  need_root
  need_tools
  # shellcheck source=/dev/null
  source "$NODE_ENV"
  # shellcheck source=/dev/null
  source "$NODE_RUN/ports.env"
  node_addresses "$NODE_K"
  local t0=$SECONDS
  sign kubelet "/O=system:nodes/CN=system:node:$NODE_NAME" \
    "$(printf 'subjectAltName=IP:%s,DNS:%s\nextendedKeyUsage=serverAuth,clientAuth' "$NODE_IP" "$NODE_NAME")"
  sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
  write_configs
  kubeconfig_for kubelet
  kubeconfig_for kube-proxy
  make_cgroups
  start containerd containerd --config "$NODE_DIR/containerd/config.toml"
  wait_for containerd 30 ctr_ version
  bash "$HACK_DIR/images/base.sh" pause
  load_images "$(bash "$HACK_DIR/images/export.sh" localhost/modelrollout/pause:3.10)"
  start kubelet "$BIN_DIR/kubelet" --config="$NODE_DIR/kubelet/config.yaml" \
    --kubeconfig="$NODE_DIR/kubelet.kubeconfig" --root-dir="$NODE_DIR/kubelet" \
    --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
    --node-labels="modelrollout.io/node=real" \
    --register-with-taints="modelrollout.io/real-node=true:NoSchedule"
  start kube-proxy "$BIN_DIR/kube-proxy" --config="$NODE_DIR/kube-proxy.yaml"
  wait_for "node $NODE_NAME Ready" 120 "$BIN_DIR/kubectl" --kubeconfig "$TESTENV_DIR/kubeconfig" \
    wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
  log "real node $NODE_NAME Ready in $((SECONDS - t0))s (pods $POD_CIDR in netns $NETNS)"
}

# ---------------------------------------------------------------------------------------- down
# every PID in the node's cgroup subtree: the shims and containers the node's containerd started
node_pids() {
  local d
  d=$(awk '$3 == "cgroup" && $4 ~ /(^|,)pids(,|$)/ {print $2}' /proc/self/mounts | head -1)
  [ -n "$d" ] && [ -d "$d$CGROUP_ROOT" ] || return 0
  find "$d$CGROUP_ROOT" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -un
}

cmd_down() {
  [ "$(id -u)" -eq 0 ] || return 0
  # Its state is removed below: nothing needs an orderly exit.
  STOP_GRACE=0 stop_pidfiles "$NODE_RUN" kube-proxy kubelet
  STOP_GRACE=0 stop_pidfiles "$NODE_RUN" containerd # after kubelet, which would otherwise restart what it stops
  local pids n=0
  while pids=$(node_pids) && [ -n "$pids" ] && [ $n -lt 20 ]; do
    # shellcheck disable=SC2086  # one PID per word
    kill -9 $pids 2>/dev/null || true
    n=$((n + 1))
    sleep 0.2
  done
  [ $n -eq 0 ] || log "stopped the node's containers and shims"
  # Mounts the killed shims and kubelet left behind (container rootfs, secrets, netns files).
  if [ -d "$NODE_DIR" ]; then
    awk -v d="$NODE_DIR" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
      umount -l "$m" 2>/dev/null || true
    done
  fi
  local d
  for d in $(cgroup_dirs); do
    [ -d "$d$CGROUP_ROOT" ] || continue
    find "$d$CGROUP_ROOT" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  if ip netns list 2>/dev/null | grep -qw "$NETNS"; then
    ip netns delete "$NETNS" # removes the veth pair, the bridge, the pods' veths and every rule in it
    log "removed netns $NETNS"
  fi
  ip link delete "$HOST_VETH" 2>/dev/null || true
  drop_api_forward
  # kubelet links container logs from the fixed /var/log/containers: remove the links into our tree.
  find /var/log/containers -maxdepth 1 -type l -lname "$NODE_DIR/*" -delete 2>/dev/null || true
  rm -rf "$NODE_DIR"
}

# load IMAGE...: copy images from the buildah store into the node's containerd, where pods with
# imagePullPolicy Never find them (there is no registry to pull from).
cmd_load() {
  need_root
  local archives=() image
  for image in "$@"; do archives+=("$(bash "$HACK_DIR/images/export.sh" "$image")"); done
  load_images "${archives[@]}"
  log "loaded into $NODE_NAME: $*"
}

case "${1:-}" in
  net) cmd_net ;;
  up) cmd_up ;;
  down) cmd_down ;;
  load) shift; cmd_load "$@" ;;
  *) echo "usage: $0 net|up|down|load IMAGE..." >&2; exit 2 ;;
esac
