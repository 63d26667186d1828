#!/usr/bin/env bash
# The seed scenario (Docker's "Connecting containers with links"), with linkrt in place of
# docker, in a private "host" network namespace so that this machine's own network is untouched.
set -euo pipefail
BIN=${LINKRT_BIN:?}
TAG=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
HOSTNS=linkrt-demo-$TAG
CLIENTNS=linkrt-democli-$TAG
TMP=$(mktemp -d /tmp/linkrt-demo.XXXXXX)
CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)/linkrt-demo-$TAG
export LINKRT_ROOT=$TMP/lib LINKRT_RUN_ROOT=$TMP/run LINKRT_BPFFS=$TMP/bpf/linkrt LINKRT_CGROUP=$CG
# The containers' own cgroups go under a parent private to this run, in every hierarchy.
export LINKRT_CGROUP_PARENT=linkrt-demo-$TAG

cleanup() {
  set +e
  for id in $(linkrt ps -aq 2>/dev/null); do linkrt rm -f "$id" >/dev/null 2>&1; done
  umount -l "$TMP/run/overlay" 2>/dev/null
  umount -l "$TMP/bpf" 2>/dev/null
  ip netns del "$CLIENTNS" 2>/dev/null
  ip netns del "$HOSTNS" 2>/dev/null
  rmdir "$CG" 2>/dev/null
  for d in /sys/fs/cgroup/*/"$LINKRT_CGROUP_PARENT" /sys/fs/cgroup/"$LINKRT_CGROUP_PARENT"; do
    [ -d "$d" ] && rmdir "$d"/* "$d" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT

ip netns add "$HOSTNS"
ip -n "$HOSTNS" link set lo up
mkdir -p "$TMP/bpf" "$CG" && mount -t bpf bpf "$TMP/bpf"
# A "client" machine on the host's network: 10.200.0.2 -> host 10.200.0.1.
ip netns add "$CLIENTNS"
ip link add uplink0 netns "$HOSTNS" type veth peer name eth0 netns "$CLIENTNS"
ip -n "$HOSTNS" addr add 10.200.0.1/24 dev uplink0 && ip -n "$HOSTNS" link set uplink0 up
ip -n "$CLIENTNS" addr add 10.200.0.2/24 dev eth0 && ip -n "$CLIENTNS" link set eth0 up
# A host process: in the host netns and in the cgroup where linkrt's socket hooks live.
on_host() { nsenter --net="/run/netns/$HOSTNS" sh -c "echo \$\$ > $CG/cgroup.procs && exec \"\$@\"" sh "$@"; }

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
PORT=$(linkrt port "$APP" 5000 | sed 's/.*://')
fetch() { # where url command...
  local where=$1 url=$2 out=""; shift 2
  for _ in $(seq 50); do out=$("$@" curl -s -m 2 "$url") && break; sleep 0.1; done
  printf '\n[%s] $ curl %s\n%s\n' "$where" "$url" "$out"
}
fetch "client 10.200.0.2" "http://10.200.0.1:$PORT/" ip netns exec "$CLIENTNS"
fetch "client 10.200.0.2" "http://10.200.0.1:$PORT/" ip netns exec "$CLIENTNS"
fetch "host" "http://127.0.0.1:$PORT/" on_host
note "eBPF DNAT on the uplink (client) and a connect() hook (host); the hit counter lives in the linked redis"
step logs "$APP"
note "the app saw the client's own address (10.200.0.2): no userland proxy in between"

step run --rm --link datastore:redis alpine env
note "REDIS_* variables come from the link; REDIS_ENV_* from the source's environment"
step inspect -f '{{ .HostConfig.Links }}' "$APP"
step status
note "the eBPF programs are attached to every container veth; counters come from pinned maps"
echo
echo "demo done; cleaning up"
