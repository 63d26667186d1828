#!/usr/bin/env bash
# A bystander linkrt instance for `cargo xtask test`: the seed demo's containers, left running in
# a private instance of their own while the whole test suite runs, then checked untouched.
#   bystander.sh start FILE   set it up; FILE records what to check and clean
#   bystander.sh check FILE   exit 0 iff its containers, addresses, published port and pins are intact
#   bystander.sh stop FILE    remove everything it made
set -euo pipefail
BIN=${LINKRT_BIN:?}
cmd=$1 file=$2

linkrt() { nsenter --net="/run/netns/$HOSTNS" "$BIN" "$@"; }

case $cmd in
start)
  TAG=$(head -c4 /dev/urandom | od -An -tx1 | tr -d ' \n')
  HOSTNS=linkrt-bystander-$TAG CLIENTNS=linkrt-bystcli-$TAG
  TMP=$(mktemp -d /tmp/linkrt-bystander.XXXXXX)
  CG=$(awk '$3 == "cgroup2" { print $2; exit }' /proc/self/mounts)/linkrt-bystander-$TAG
  cat >"$file" <<EOF
HOSTNS=$HOSTNS
CLIENTNS=$CLIENTNS
TMP=$TMP
CG=$CG
export LINKRT_ROOT=$TMP/lib LINKRT_RUN_ROOT=$TMP/run LINKRT_BPFFS=$TMP/bpf/linkrt LINKRT_CGROUP=$CG
export LINKRT_CGROUP_PARENT=linkrt-bystander-$TAG
EOF
  # shellcheck disable=SC1090
  . "$file"
  ip netns add "$HOSTNS"
  ip -n "$HOSTNS" link set lo up
  mkdir -p "$TMP/bpf" "$CG" && mount -t bpf bpf "$TMP/bpf"
  ip netns add "$CLIENTNS"
  ip link add uplink0 netns "$HOSTNS" type veth peer name eth0 netns "$CLIENTNS"
  ip -n "$HOSTNS" addr add 10.201.0.1/24 dev uplink0 && ip -n "$HOSTNS" link set uplink0 up
  ip -n "$CLIENTNS" addr add 10.201.0.2/24 dev eth0 && ip -n "$CLIENTNS" link set eth0 up
  linkrt run -d --name datastore redis >/dev/null
  linkrt run -d -P --name app --link datastore:redis jpetazzo/trainingwheels >/dev/null
  PORT=$(linkrt port app 5000 | sed 's/.*://')
  {
    echo "PORT=$PORT"
    echo "IPS='$(linkrt inspect -f '{{.Name}} {{.NetworkSettings.IPAddress}}' datastore app | tr '\n' ' ')'"
    echo "PINS='$(ls "$TMP/bpf/linkrt/links" | tr '\n' ' ')'"
  } >>"$file"
  # It answers now, with the hit counter of the linked redis.
  for _ in $(seq 50); do ip netns exec "$CLIENTNS" curl -s -m 2 "http://10.201.0.1:$PORT/" | grep -q . && exit 0; sleep 0.2; done
  echo "bystander: the published port does not answer" >&2
  exit 1
  ;;
check)
  # shellcheck disable=SC1090
  . "$file"
  fail() { echo "bystander touched: $*" >&2; exit 1; }
  [ "$(linkrt ps -q | wc -l)" = 2 ] || fail "$(linkrt ps -a)"
  now="$(linkrt inspect -f '{{.Name}} {{.NetworkSettings.IPAddress}}' datastore app | tr '\n' ' ')"
  [ "$now" = "$IPS" ] || fail "addresses $IPS became $now"
  pins="$(ls "$TMP/bpf/linkrt/links" | tr '\n' ' ')"
  [ "$pins" = "$PINS" ] || fail "pinned links $PINS became $pins"
  st=$(linkrt status)
  grep -q '^datapath:   ok' <<<"$st" || fail "$st"
  body=$(ip netns exec "$CLIENTNS" curl -s -m 3 "http://10.201.0.1:$PORT/") || fail "the published port does not answer"
  case $body in *redis*|*hit*|*Hit*|*[0-9]*) ;; *) fail "unexpected page: $body" ;; esac
  echo "bystander intact: 2 containers, same addresses ($IPS), same pins, published port $PORT answers"
  ;;
stop)
  set +e
  # shellcheck disable=SC1090
  . "$file" || exit 0
  for id in $(linkrt ps -aq 2>/dev/null); do linkrt rm -f "$id" >/dev/null 2>&1; done
  umount -l "$TMP/run/overlay" 2>/dev/null
  umount -l "$TMP/bpf" 2>/dev/null
  ip netns del "$CLIENTNS" 2>/dev/null
  ip netns del "$HOSTNS" 2>/dev/null
  rmdir "$CG" 2>/dev/null
  for d in /sys/fs/cgroup/*/"$LINKRT_CGROUP_PARENT" /sys/fs/cgroup/"$LINKRT_CGROUP_PARENT"; do
    [ -d "$d" ] && rmdir "$d"/* "$d" 2>/dev/null
  done
  rm -rf "$TMP" "$file"
  ;;
esac
