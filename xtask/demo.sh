#!/usr/bin/env bash
# The seed scenario (Docker's "Connecting containers with links"), with linkrt in place of
# docker, in a private "host" network namespace so that this machine's own network is untouched.
set -euo pipefail
BIN=${LINKRT_BIN:?}
TAG=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
HOSTNS=linkrt-demo-$TAG
TMP=$(mktemp -d /tmp/linkrt-demo.XXXXXX)
export LINKRT_ROOT=$TMP/lib LINKRT_RUN_ROOT=$TMP/run LINKRT_BPFFS=$TMP/bpf/linkrt

cleanup() {
  set +e
  for id in $(linkrt ps -aq 2>/dev/null); do linkrt rm -f "$id" >/dev/null 2>&1; done
  umount -l "$TMP/run/overlay" 2>/dev/null
  umount -l "$TMP/bpf" 2>/dev/null
  ip netns del "$HOSTNS" 2>/dev/null
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up
mkdir -p "$TMP/bpf" && mount -t bpf bpf "$TMP/bpf"

linkrt() { nsenter --net="/run/netns/$HOSTNS" "$BIN" "$@"; }
say() { printf '\n\033[1m$ linkrt %s\033[0m\n' "$*"; }
step() { say "$@"; linkrt "$@"; }
note() { printf '  \033[2m# %s\033[0m\n' "$*"; }

echo "linkrt demo: private host namespace $HOSTNS, state in $TMP"
step run -d --name datastore redis
step ps -l
note "the redis container runs, exposing 6379/tcp (not published)"

step run --rm --link datastore:redis alpine ping -c 2 redis
note "redis resolves through /etc/hosts written by the link"

step run -d -P --link datastore:redis jpetazzo/trainingwheels
step ps -l
APP=$(linkrt ps -lq)
step port "$APP"
IP=$(linkrt inspect -f '{{.NetworkSettings.IPAddress}}' "$APP")
for i in 1 2 3; do
  for _ in $(seq 50); do
    if out=$(ip netns exec "$HOSTNS" curl -sf "http://$IP:5000/"); then break; fi
    sleep 0.1
  done
  printf '\n$ curl http://%s:5000/\n%s\n' "$IP" "$out"
done
note "the hit counter lives in the linked redis"

step run --rm --link datastore:redis alpine env
note "REDIS_* variables come from the link; REDIS_ENV_* from the source's environment"
step inspect -f '{{ .HostConfig.Links }}' "$APP"
step status
note "the eBPF programs are attached to every container veth; counters come from pinned maps"
echo
echo "demo done; cleaning up"
