#!/usr/bin/env bash
# Debian packages the tests, demo and benchmarks use (prometheus, wrk, ip netns, shellcheck, npm, and the
# real node's runtime and image builder);
# installs only what is missing.
set -euo pipefail
missing=()
command -v prometheus >/dev/null || missing+=(prometheus)
command -v wrk >/dev/null || missing+=(wrk)
command -v ip >/dev/null || missing+=(iproute2)
command -v openssl >/dev/null || missing+=(openssl)
command -v curl >/dev/null || missing+=(curl)
command -v shellcheck >/dev/null || missing+=(shellcheck)
command -v taskset >/dev/null || missing+=(util-linux)
command -v npm >/dev/null || missing+=(nodejs npm)  # Azurite (hack/build-tools.sh azurite)
# The real node (MODELROLLOUT_REAL_NODE=0 leaves it out): container runtime, CNI plugins, kube-proxy's
# iptables and conntrack, and the Docker-less image builder with debootstrap for its base image.
if [ "${MODELROLLOUT_REAL_NODE:-1}" != 0 ]; then
  command -v containerd >/dev/null || missing+=(containerd)
  command -v runc >/dev/null || missing+=(runc)
  [ -x /usr/lib/cni/bridge ] || missing+=(containernetworking-plugins)
  command -v iptables >/dev/null || missing+=(iptables)
  command -v conntrack >/dev/null || missing+=(conntrack)
  command -v buildah >/dev/null || missing+=(buildah)
  command -v debootstrap >/dev/null || missing+=(debootstrap)
  command -v cc >/dev/null || missing+=(gcc libc6-dev)
fi
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO=sudo
echo "installing Debian packages: ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
