#!/usr/bin/env bash
# Shared paths for the hack/ scripts. Sourced, never run.
# shellcheck disable=SC2034  # the variables are used by the scripts that source this file
HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$HACK_DIR/.." && pwd)
# shellcheck source=versions.env
source "$HACK_DIR/versions.env"
CACHE_DIR=${MODELROLLOUT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelrollout}
BIN_DIR="$CACHE_DIR/bin"
TESTENV_DIR=${MODELROLLOUT_TESTENV:-$REPO_ROOT/.testenv}
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
