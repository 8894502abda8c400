#!/bin/bash
# Stops the e2e cluster started by e2e/cluster-up.sh: its recorded processes (by PID, newest first),
# the containers they ran, its cgroups and its network namespace. The build cache stays.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/e2e/env.sh"
[ -f "$E2E_DIR/pids" ] || { ip netns del "$NETNS" 2>/dev/null; exit 0; }
# The cluster's processes are exactly those in its cgroup subtree (the pods) and those sharing its
# mount namespace (containerd, its shims, kubelet, the control plane): nothing else is touched.
holder=$(awk '$2 == "mount-namespace" {print $1}' "$E2E_DIR/pids")
cluster_pids() {
  [ -d /sys/fs/cgroup/pids/sluice-e2e ] && find /sys/fs/cgroup/pids/sluice-e2e -name cgroup.procs -exec cat {} + 2>/dev/null
  if [ -n "$holder" ] && [ -e "/proc/$holder/ns/mnt" ]; then
    local mnt; mnt=$(readlink "/proc/$holder/ns/mnt")
    for d in /proc/[0-9]*; do [ "$(readlink "$d/ns/mnt" 2>/dev/null)" = "$mnt" ] && echo "${d#/proc/}"; done
  fi
}
for pid in $(awk '{print $1}' "$E2E_DIR/pids" | tac); do
  [ "$pid" = "$holder" ] || kill "$pid" 2>/dev/null
done
sleep 2
for pid in $(cluster_pids | sort -u); do [ "$pid" = "$$" ] || kill -9 "$pid" 2>/dev/null; done
[ -n "$holder" ] && kill -9 "$holder" 2>/dev/null
sleep 1
# The cluster's cgroups, leaves first.
for c in /sys/fs/cgroup/*/sluice-e2e; do
  [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null
done
ip netns del "$NETNS" 2>/dev/null
: > "$E2E_DIR/pids.done"; mv "$E2E_DIR/pids" "$E2E_DIR/pids.done"
# The mount namespace dies with its holder (killed above); its bind mounts go with it.
rm -rf "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc" "$E2E_DIR/containerd" "$E2E_DIR/kubelet" "$E2E_DIR/etcd" "$E2E_DIR/run-containerd" "$E2E_DIR/lib-sluice" "$E2E_DIR/run-sluice" "$E2E_DIR/cni-conf" "$E2E_DIR/cni-bin" "$E2E_DIR/log-pods" "$E2E_DIR/log-containers" 2>/dev/null
echo "e2e cluster stopped"
