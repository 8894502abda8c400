#!/bin/bash
# make e2e: a real single-node Kubernetes 1.20 (built once, cached), Sluice installed only with
# `kubectl apply -f install/` from dist/sluice-image.tar, then:
#   1. the datastore through the API: pods and policies created, changed, deleted reach the datapath;
#   2. the agent pod deleted while a TCP connection carries traffic: the connection survives; runtime security
#      rules changed in their ConfigMap reach the agent (a kill rule on, then off);
#   3. the upstream NetworkPolicy e2e specs (test/e2e/network/network_policy.go) and the [sig-network] Services
#      specs a single node can run (test/e2e/network/service.go), with ginkgo.
# The cluster runs without kube-proxy (Sluice serves Services); E2E_KUBE_PROXY=1 starts kube-proxy as before.
# Prints a summary (specs, passed, wall time, pod startup). E2E_KEEP=1 leaves the cluster up.
# E2E_FOCUS / E2E_SKIP / E2E_NODES tune the upstream run; E2E_ONLY=upstream skips steps 1 and 2, E2E_ONLY=roll runs
# only the rolling update (an image built by e2e/next-image.sh, the same connection kept through it).
# E2E_IMAGE / E2E_INSTALL_DIR try another image or manifests (e.g. a datapath change) instead of
# dist/sluice-image.tar and install/; make e2e uses the defaults.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/e2e/env.sh"
NODE=$ROOT/node_modules/.bin/node
# The 30 NetworkPolicy specs and the 27 [sig-network] Services specs one node without a cloud can run: skipped are
# SCTP connectivity (no SCTP in this kernel), LoadBalancer and ESIPP (a cloud's balancer), [Slow], [Disruptive] and [Serial].
FOCUS=${E2E_FOCUS:-'NetworkPolicy|\[sig-network\] Services '}
SKIP=${E2E_SKIP:-'SCTPConnectivity|\[Slow\]|\[Disruptive\]|\[Serial\]|ESIPP|LoadBalancer'}
NODES=${E2E_NODES:-3}
IMAGE=${E2E_IMAGE:-$ROOT/dist/sluice-image.tar}
INSTALL=${E2E_INSTALL_DIR:-$ROOT/install}
REPORT=${E2E_REPORT_DIR:-$ROOT/dist/e2e}
started=$(date +%s)
rm -rf "$REPORT"; mkdir -p "$REPORT"

cleanup() {
  local rc=$?
  [ -n "${STARTUP_PID:-}" ] && kill "$STARTUP_PID" 2>/dev/null
  if [ -f "$E2E_DIR/pids" ]; then
    "$KUBECTL" -n sluice-system logs ds/sluice --tail=200 > "$REPORT/agent.log" 2>&1 || true
    cp "$E2E_DIR/logs/"*.log "$REPORT/" 2>/dev/null || true
    if [ "${E2E_KEEP:-0}" = 1 ]; then echo "cluster left up: KUBECONFIG=$KUBECONFIG; make e2e-down removes it"; else "$ROOT/e2e/cluster-down.sh"; fi
  fi
  exit $rc
}
trap cleanup EXIT

"$ROOT/e2e/cluster-up.sh"
in_cluster ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$IMAGE" >/dev/null
echo "--- node without a CNI:"; "$KUBECTL" get node "$NODE_NAME" --no-headers
if [ "${E2E_KUBE_PROXY:-0}" != 1 ]; then
  # No kube-proxy: the agent reaches the API server at its own address (install/README.md, "Without kube-proxy").
  "$KUBECTL" apply -f "$INSTALL/00-namespace.yaml"
  "$KUBECTL" -n sluice-system create configmap sluice-kube-apiserver --from-literal=host="$NODE_IP" --from-literal=port=6443
fi
"$KUBECTL" apply -f "$INSTALL/"
"$KUBECTL" -n sluice-system rollout status ds/sluice --timeout=300s
"$KUBECTL" wait --for=condition=Ready "node/$NODE_NAME" --timeout=300s
installed=$(date +%s)
echo "--- Sluice installed, node Ready in $((installed - started)) s from the start"

if [ "${E2E_ONLY:-}" = roll ] || [ -z "${E2E_ONLY:-}" ]; then
  # A rolling update to an image with another datapath (same map layouts) while a connection carries traffic.
  NEXT=$("$ROOT/e2e/next-image.sh")
  in_cluster ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$ROOT/dist/sluice-image-next.tar" >/dev/null
  ROLL_ARGS=(--roll "$NEXT")
fi
if [ "${E2E_ONLY:-}" = roll ]; then
  in_cluster "$NODE" "$ROOT/e2e/agent-restart.ts" "${ROLL_ARGS[@]}" | tee "$REPORT/rolling-update.txt"
  exit 0
fi
if [ "${E2E_ONLY:-}" != upstream ]; then
  # The API, the datastore and the datapath together; the agent's socket and maps are in the cluster's namespaces.
  in_cluster "$NODE" "$ROOT/e2e/datapath-via-api.ts" | tee "$REPORT/datapath-via-api.txt"
  in_cluster "$NODE" "$ROOT/e2e/agent-restart.ts" | tee "$REPORT/agent-restart.txt"
  in_cluster "$NODE" "$ROOT/e2e/security-rules-reload.ts" | tee "$REPORT/security-rules-reload.txt"
  in_cluster "$NODE" "$ROOT/e2e/agent-restart.ts" "${ROLL_ARGS[@]}" | tee "$REPORT/rolling-update.txt"
fi

# Pod startup as the e2e run sees it: creation → first container running, for every pod the specs create.
nsenter --net="/run/netns/$NETNS" "$NODE" "$ROOT/e2e/pod-startup.ts" --out "$REPORT/pod-startup.json" &
STARTUP_PID=$!
upstream_started=$(date +%s)
set +e
nsenter --net="/run/netns/$NETNS" "$K8S_BIN/ginkgo" -nodes="$NODES" -focus="$FOCUS" -skip="$SKIP" -noColor -succinct "$K8S_BIN/e2e.test" -- \
  --kubeconfig="$KUBECONFIG" --provider=skeleton --report-dir="$REPORT" --num-nodes=1 --disable-log-dump \
  --allowed-not-ready-nodes=0 --minStartupPods=0 --system-pods-startup-timeout=1m 2>&1 | tee "$REPORT/upstream.log"
upstream_rc=${PIPESTATUS[0]}
set -e
upstream_ended=$(date +%s)
kill -INT "$STARTUP_PID" 2>/dev/null; wait "$STARTUP_PID" 2>/dev/null || true
STARTUP_PID=

"$NODE" "$ROOT/e2e/summary.ts" --report-dir "$REPORT" --upstream-seconds $((upstream_ended - upstream_started)) --total-seconds $(( $(date +%s) - started )) | tee "$REPORT/summary.txt"
exit "$upstream_rc"
