# Shared settings of the e2e cluster (sourced by e2e/*.sh).
CACHE=${SLUICE_K8S_CACHE:-/var/cache/sluice-k8s}
K8S_BIN=$CACHE/bin
IMAGE_CACHE=$CACHE/images
E2E_DIR=${SLUICE_E2E_DIR:-/var/lib/sluice-e2e}
NETNS=sluice-e2e
NODE_NAME=sluice-e2e
NODE_IP=10.250.250.1
NODE_PEER_IP=10.250.250.2
CLUSTER_CIDR=10.244.0.0/16
SERVICE_CIDR=10.96.0.0/16
API_SERVICE_IP=10.96.0.1
CONTAINERD_SOCK=$E2E_DIR/containerd.sock
export KUBECONFIG=$E2E_DIR/admin.kubeconfig
# The API server is reachable only inside the network namespace: always go through this wrapper.
KUBECTL=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/kubectl.sh
# Runs a command in the cluster's mount and network namespaces (the holder's), as its components see the node.
in_cluster() {
  local holder
  holder=$(awk '$2 == "mount-namespace" {print $1}' "$E2E_DIR/pids")
  nsenter --mount="/proc/$holder/ns/mnt" --net="/run/netns/$NETNS" "$@"
}
