#!/usr/bin/env bash
# Starts a real, local Kubernetes control plane without Docker: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (simulated nodes that run pods through Stages),
# and by default one real worker node (hack/node/node.sh: kubelet, kube-proxy, containerd, runc, CNI);
# MODELROLLOUT_REAL_NODE=0 leaves the real node out for the quick kwok-only path.
# Idempotent: a running cluster is left alone. State, logs, PIDs and the kubeconfig live in
# $TESTENV_DIR (.testenv/ by default); `hack/cluster-down.sh` stops exactly the PIDs recorded there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

NODES=${KWOK_NODES:-2}
NODE_PODS=${KWOK_NODE_PODS:-110} # pods each simulated node takes (bench-operator raises it)
REAL_NODE=${MODELROLLOUT_REAL_NODE:-1}
ADVERTISE=127.0.0.1 # with the real node: the host end of its veth, where pods reach the API server
RUN="$TESTENV_DIR/run"
PKI="$TESTENV_DIR/pki"
KUBECONFIG_OUT="$TESTENV_DIR/kubeconfig"
export KUBECONFIG="$KUBECONFIG_OUT"

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

ports() {
  if [ ! -f "$RUN/ports.env" ]; then
    { echo "ETCD_PORT=$(free_port)"; echo "ETCD_PEER_PORT=$(free_port)"; echo "API_PORT=$(free_port)"
      echo "KCM_PORT=$(free_port)"; echo "SCHED_PORT=$(free_port)"; echo "KWOK_PORT=$(free_port)"; } >"$RUN/ports.env"
  fi
  # shellcheck source=/dev/null
  source "$RUN/ports.env"
}

pki() {
  [ -f "$PKI/admin.crt" ] && return 0
  mkdir -p "$PKI" && cd "$PKI"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=modelrollout-local-ca" 2>/dev/null
  cat >server.ext <<EXT
subjectAltName=IP:127.0.0.1,IP:$ADVERTISE,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc
extendedKeyUsage=serverAuth
EXT
  openssl req -newkey rsa:2048 -nodes -keyout apiserver.key -out apiserver.csr -subj "/CN=kube-apiserver" 2>/dev/null
  openssl x509 -req -in apiserver.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile server.ext -out apiserver.crt 2>/dev/null
  echo "extendedKeyUsage=clientAuth" >client.ext
  openssl req -newkey rsa:2048 -nodes -keyout admin.key -out admin.csr -subj "/O=system:masters/CN=modelrollout-admin" 2>/dev/null
  openssl x509 -req -in admin.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -extfile client.ext -out admin.crt 2>/dev/null
  openssl genrsa -out sa.key 2048 2>/dev/null && openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd - >/dev/null
}

kubeconfig() {
  cat >"$KUBECONFIG_OUT" <<KC
apiVersion: v1
kind: Config
clusters:
- name: modelrollout-local
  cluster: {server: "https://127.0.0.1:$API_PORT", certificate-authority: "$PKI/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$PKI/admin.crt", client-key: "$PKI/admin.key"}
contexts:
- name: modelrollout-local
  context: {cluster: modelrollout-local, user: admin, namespace: default}
current-context: modelrollout-local
KC
}

start() { # NAME CMD... : start in the background, record the PID, log to $RUN/NAME.log
  local name=$1; shift
  alive "$name" && return 0
  nohup "$@" >"$RUN/$name.log" 2>&1 </dev/null &
  echo $! >"$RUN/$name.pid"
  log "started $name (pid $!)"
}

wait_for() { # WHAT SECONDS CMD...
  local what=$1 limit=$2; shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $deadline ]; then log "timed out waiting for $what; see $RUN/*.log"; exit 1; fi
    sleep 0.3
  done
}

api_ready() {
  curl -sf --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "https://127.0.0.1:$API_PORT/readyz"
}

nodes() {
  local i
  for i in $(seq 0 $((NODES - 1))); do
    "$BIN_DIR/kubectl" apply --server-side --field-manager=modelrollout-hack -f - >/dev/null <<NODE
apiVersion: v1
kind: Node
metadata:
  name: kwok-node-$i
  annotations: {node.alpha.kubernetes.io/ttl: "0", kwok.x-k8s.io/node: fake}
  labels: {type: kwok, kubernetes.io/hostname: kwok-node-$i, kubernetes.io/os: linux, kubernetes.io/arch: amd64}
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
  capacity: {cpu: "32", memory: 256Gi, pods: "$NODE_PODS"}
NODE
  done
}

main() {
  local t0=$SECONDS
  bash "$HACK_DIR/build-tools.sh" cluster
  mkdir -p "$RUN"
  ports
  if [ "$REAL_NODE" != 0 ] && alive kube-apiserver && [ ! -f "$RUN/node.env" ]; then
    log "this cluster was started without the real node; make cluster-down first to add it"
    REAL_NODE=0
  fi
  local admission=() # extra kube-apiserver flags for the real node
  if [ "$REAL_NODE" != 0 ]; then
    # The API server stays on 127.0.0.1; node.sh forwards the veth's host end to it.
    ADVERTISE=$(bash "$HACK_DIR/node/node.sh" net)
    # Namespaces choose the real node by annotation (node selector + toleration of its taint).
    # kubectl logs/exec reach the kubelet as the admin client.
    # shellcheck disable=SC2054  # the commas belong to one flag's value
    admission=(--enable-admission-plugins=PodNodeSelector,PodTolerationRestriction
      --kubelet-client-certificate="$PKI/admin.crt" --kubelet-client-key="$PKI/admin.key"
      --kubelet-preferred-address-types=InternalIP)
  fi
  pki
  kubeconfig
  start etcd "$BIN_DIR/etcd" --name=local --data-dir="$TESTENV_DIR/etcd" \
    --listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster="local=http://127.0.0.1:$ETCD_PEER_PORT" --unsafe-no-fsync --quota-backend-bytes=2147483648
  wait_for etcd 30 curl -sf "http://127.0.0.1:$ETCD_PORT/health"
  start kube-apiserver "$BIN_DIR/kube-apiserver" --etcd-servers="http://127.0.0.1:$ETCD_PORT" \
    --bind-address=127.0.0.1 --advertise-address="$ADVERTISE" --secure-port="$API_PORT" "${admission[@]}" \
    --tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
    --client-ca-file="$PKI/ca.crt" --authorization-mode=Node,RBAC \
    --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$PKI/sa.pub" \
    --service-account-signing-key-file="$PKI/sa.key" --service-cluster-ip-range=10.96.0.0/16 \
    --allow-privileged=true --enable-priority-and-fairness=false --profiling=false
  wait_for kube-apiserver 90 api_ready
  start kube-controller-manager "$BIN_DIR/kube-controller-manager" --kubeconfig="$KUBECONFIG_OUT" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$KCM_PORT" \
    --service-account-private-key-file="$PKI/sa.key" --root-ca-file="$PKI/ca.crt" \
    --controllers='*,-nodeipam,-cloud-node-lifecycle,-persistentvolume-binder' \
    --concurrent-deployment-syncs=10 --profiling=false --horizontal-pod-autoscaler-sync-period=3s \
    --kube-api-qps="${MODELROLLOUT_KCM_QPS:-20}" --kube-api-burst="${MODELROLLOUT_KCM_BURST:-30}"
  start kube-scheduler "$BIN_DIR/kube-scheduler" --kubeconfig="$KUBECONFIG_OUT" \
    --leader-elect=false --bind-address=127.0.0.1 --secure-port="$SCHED_PORT" --profiling=false
  start kwok "$BIN_DIR/kwok" --kubeconfig="$KUBECONFIG_OUT" --manage-all-nodes=false \
    --manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake --node-ip=10.244.0.1 \
    --cidr=10.244.0.0/16 --node-port="$KWOK_PORT" --server-address="127.0.0.1:$KWOK_PORT" \
    --config="$CACHE_DIR/kwok-stages/$KWOK_VERSION/node-initialize.yaml" \
    --config="$CACHE_DIR/kwok-stages/$KWOK_VERSION/node-heartbeat.yaml" --config="$HACK_DIR/kwok/stages.yaml"
  nodes
  wait_for "Ready nodes" 60 "$BIN_DIR/kubectl" wait --for=condition=Ready node --all --timeout=1s
  # The node lifecycle controller lifts the not-ready taint once kwok reports the nodes Ready.
  wait_for "untainted nodes" 60 bash -c "! '$BIN_DIR/kubectl' get nodes -o jsonpath='{.items[*].spec.taints}' | grep -q not-ready"
  wait_for "default ServiceAccount" 60 "$BIN_DIR/kubectl" get serviceaccount default -n default
  if [ "$REAL_NODE" != 0 ]; then bash "$HACK_DIR/node/node.sh" up; fi
  log "cluster ready in $((SECONDS - t0))s: export KUBECONFIG=$KUBECONFIG_OUT"
}

main "$@"
