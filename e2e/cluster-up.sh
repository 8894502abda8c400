#!/bin/bash
# Starts a single-node Kubernetes 1.20 with NO CNI installed, offline, inside its own network
# namespace (node address on a veth pair with both ends inside) and its own mount namespace
# (private /etc/cni/net.d, /opt/cni/bin, /run/sluice, /var/lib/sluice, /var/lib/kubelet, a bpffs of
# its own at /sys/fs/bpf), so it touches nothing else on the machine. Every process's PID is
# recorded in $E2E_DIR/pids for e2e/cluster-down.sh. Prints the kubeconfig path.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
source "$ROOT/e2e/env.sh"

"$ROOT/e2e/k8s-build.sh"
"$ROOT/e2e/images.sh"
need=()
command -v containerd >/dev/null || need+=(containerd)
command -v runc >/dev/null || need+=(runc)
command -v etcd >/dev/null || need+=(etcd-server)
command -v conntrack >/dev/null || need+=(conntrack)
command -v openssl >/dev/null || need+=(openssl)
[ ${#need[@]} -eq 0 ] || apt-get install -y -qq "${need[@]}" >/dev/null

if [ -f "$E2E_DIR/pids" ]; then "$ROOT/e2e/cluster-down.sh"; fi
mkdir -p "$E2E_DIR"/{pki,logs,etcd,containerd,kubelet,cni-bin,cni-conf,run-sluice,lib-sluice,run-containerd,log-pods,log-containers}
: > "$E2E_DIR/pids"
record() { echo "$1 $2" >> "$E2E_DIR/pids"; }

# --- PKI: one CA, the API server's serving cert, one admin client cert every component uses, SA keys.
P=$E2E_DIR/pki
if [ ! -f "$P/admin.crt" ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$P/ca.key" -out "$P/ca.crt" -days 30 -subj /CN=sluice-e2e-ca 2>/dev/null
  cat > "$P/apiserver.ext" <<EOT
subjectAltName=DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost,IP:127.0.0.1,IP:$NODE_IP,IP:$API_SERVICE_IP
extendedKeyUsage=serverAuth
EOT
  openssl req -newkey rsa:2048 -nodes -keyout "$P/apiserver.key" -out "$P/apiserver.csr" -subj /CN=kube-apiserver 2>/dev/null
  openssl x509 -req -in "$P/apiserver.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/apiserver.crt" -days 30 -extfile "$P/apiserver.ext" 2>/dev/null
  printf 'extendedKeyUsage=clientAuth\n' > "$P/client.ext"
  openssl req -newkey rsa:2048 -nodes -keyout "$P/admin.key" -out "$P/admin.csr" -subj "/O=system:masters/CN=admin" 2>/dev/null
  openssl x509 -req -in "$P/admin.csr" -CA "$P/ca.crt" -CAkey "$P/ca.key" -CAcreateserial -out "$P/admin.crt" -days 30 -extfile "$P/client.ext" 2>/dev/null
  openssl genrsa -out "$P/sa.key" 2048 2>/dev/null
  openssl rsa -in "$P/sa.key" -pubout -out "$P/sa.pub" 2>/dev/null
fi
cat > "$KUBECONFIG" <<EOT
apiVersion: v1
kind: Config
clusters:
- name: e2e
  cluster: {server: "https://$NODE_IP:6443", certificate-authority: "$P/ca.crt"}
users:
- name: admin
  user: {client-certificate: "$P/admin.crt", client-key: "$P/admin.key"}
contexts:
- name: e2e
  context: {cluster: e2e, user: admin}
current-context: e2e
EOT

# --- Network namespace: the node's address on a veth whose peer is in the same namespace.
ip netns add "$NETNS"
ip -n "$NETNS" link set lo up
ip -n "$NETNS" link add e2e0 type veth peer name e2e1
ip -n "$NETNS" addr add "$NODE_IP/24" dev e2e0
ip -n "$NETNS" addr add "$NODE_PEER_IP/24" dev e2e1
ip -n "$NETNS" link set e2e0 up
ip -n "$NETNS" link set e2e1 up
ip -n "$NETNS" route add default via "$NODE_PEER_IP" dev e2e0
ip netns exec "$NETNS" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0

# --- Mount namespace, held by a sleeping process; private copies of the node paths Sluice and the runtime use.
unshare --mount --propagation private sleep infinity &
HOLDER=$!
record "$HOLDER" mount-namespace
sleep 0.2
in_ns() { nsenter --mount="/proc/$HOLDER/ns/mnt" --net="/run/netns/$NETNS" "$@"; }
in_ns bash -euc "
  mount --bind '$E2E_DIR/cni-bin' /opt/cni/bin 2>/dev/null || { mkdir -p /opt/cni/bin && mount --bind '$E2E_DIR/cni-bin' /opt/cni/bin; }
  mkdir -p /etc/cni/net.d /run/sluice /var/lib/sluice /var/lib/kubelet /var/lib/containerd /run/containerd /var/log/pods /var/log/containers
  mount --bind '$E2E_DIR/cni-conf' /etc/cni/net.d
  mount --bind '$E2E_DIR/run-sluice' /run/sluice
  mount --bind '$E2E_DIR/lib-sluice' /var/lib/sluice
  mount --bind '$E2E_DIR/kubelet' /var/lib/kubelet
  mount --bind '$E2E_DIR/containerd' /var/lib/containerd
  mount --bind '$E2E_DIR/run-containerd' /run/containerd
  mount --bind '$E2E_DIR/log-pods' /var/log/pods
  mount --bind '$E2E_DIR/log-containers' /var/log/containers
  mount -t tmpfs tmpfs /run/netns
  mount -t bpf bpf /sys/fs/bpf
  mount --make-rshared /
"
cp /usr/lib/cni/loopback "$E2E_DIR/cni-bin/" 2>/dev/null || true

# --- containerd: the CRI runtime, with the CNI dirs Sluice installs into.
cat > "$E2E_DIR/containerd.toml" <<EOT
version = 2
root = "/var/lib/containerd"
state = "/run/containerd"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "k8s.gcr.io/pause:3.2"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/opt/cni/bin"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOT
start() { # name, command...
  local name=$1; shift
  in_ns "$@" > "$E2E_DIR/logs/$name.log" 2>&1 &
  record $! "$name"
}
rm -f "$CONTAINERD_SOCK" "$CONTAINERD_SOCK.ttrpc"
start containerd containerd --config "$E2E_DIR/containerd.toml"
for _ in $(seq 100); do in_ns ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1 && break; sleep 0.2; done
for img in "$IMAGE_CACHE/pause.tar" "$IMAGE_CACHE/agnhost.tar"; do
  in_ns ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$img" >/dev/null
done

# --- Control plane.
start etcd etcd --data-dir "$E2E_DIR/etcd" --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 --initial-cluster default=http://127.0.0.1:2380
start kube-apiserver "$K8S_BIN/kube-apiserver" --etcd-servers=http://127.0.0.1:2379 --advertise-address="$NODE_IP" --secure-port=6443 \
  --service-cluster-ip-range="$SERVICE_CIDR" --client-ca-file="$P/ca.crt" --tls-cert-file="$P/apiserver.crt" --tls-private-key-file="$P/apiserver.key" \
  --kubelet-client-certificate="$P/admin.crt" --kubelet-client-key="$P/admin.key" \
  --service-account-key-file="$P/sa.pub" --service-account-signing-key-file="$P/sa.key" --service-account-issuer=https://kubernetes.default.svc.cluster.local \
  --authorization-mode=Node,RBAC --allow-privileged=true --enable-priority-and-fairness=false --kubelet-preferred-address-types=InternalIP
for _ in $(seq 120); do "$KUBECTL" get --raw /readyz >/dev/null 2>&1 && break; sleep 0.5; done
"$KUBECTL" get --raw /readyz >/dev/null
start kube-controller-manager "$K8S_BIN/kube-controller-manager" --kubeconfig="$KUBECONFIG" --leader-elect=false --bind-address=127.0.0.1 \
  --allocate-node-cidrs=true --cluster-cidr="$CLUSTER_CIDR" --node-cidr-mask-size=24 --service-cluster-ip-range="$SERVICE_CIDR" \
  --service-account-private-key-file="$P/sa.key" --root-ca-file="$P/ca.crt" --use-service-account-credentials=true
start kube-scheduler "$K8S_BIN/kube-scheduler" --kubeconfig="$KUBECONFIG" --leader-elect=false --bind-address=127.0.0.1
# Cluster DNS (there is no DNS add-on image offline): Services by name, as the upstream Services specs resolve them.
start cluster-dns "$ROOT/node_modules/.bin/node" "$ROOT/e2e/cluster-dns.ts" --listen "$NODE_IP"

# --- Node: kubelet (containerd as runtime: the CNI dirs are containerd's); kube-proxy only with E2E_KUBE_PROXY=1
# (Sluice serves Services in eBPF: the cluster runs without it, as issue 17 asks).
cat > "$E2E_DIR/kubelet.yaml" <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$P/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
cgroupRoot: /sluice-e2e
failSwapOn: false
oomScoreAdj: 0
clusterDomain: cluster.local
clusterDNS: ["$NODE_IP"]
resolvConf: /etc/resolv.conf
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
serializeImagePulls: false
maxPods: 200
EOT
for c in /sys/fs/cgroup/*/; do [ -L "${c%/}" ] || mkdir -p "$c/sluice-e2e"; done
start kubelet "$K8S_BIN/kubelet" --config="$E2E_DIR/kubelet.yaml" --kubeconfig="$KUBECONFIG" --hostname-override="$NODE_NAME" --node-ip="$NODE_IP" \
  --container-runtime=remote --container-runtime-endpoint="unix://$CONTAINERD_SOCK" --image-service-endpoint="unix://$CONTAINERD_SOCK" \
  --runtime-request-timeout=5m
if [ "${E2E_KUBE_PROXY:-0}" = 1 ]; then
  start kube-proxy "$K8S_BIN/kube-proxy" --kubeconfig="$KUBECONFIG" --hostname-override="$NODE_NAME" --cluster-cidr="$CLUSTER_CIDR" \
    --proxy-mode=iptables --conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 --conntrack-tcp-timeout-close-wait=0 \
    --metrics-bind-address=127.0.0.1:10249 --healthz-bind-address=127.0.0.1:10256
fi

for _ in $(seq 120); do "$KUBECTL" get node "$NODE_NAME" >/dev/null 2>&1 && break; sleep 0.5; done
"$KUBECTL" get node "$NODE_NAME" -o wide
echo "$KUBECONFIG"
