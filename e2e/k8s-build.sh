#!/bin/bash
# Builds Kubernetes 1.20 (Debian's `kubernetes` source package) once into a cache outside the clone:
# kube-apiserver, controller-manager, scheduler, kubelet, kube-proxy, kubectl, e2e.test, ginkgo, agnhost.
set -euo pipefail
CACHE=${SLUICE_K8S_CACHE:-/var/cache/sluice-k8s}
BIN=$CACHE/bin
WANT="kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl e2e.test ginkgo agnhost"
have_all() { for b in $WANT; do [ -x "$BIN/$b" ] || return 1; done; }
if have_all; then echo "k8s-build: cached in $BIN"; exit 0; fi
mkdir -p "$CACHE/src" "$BIN"
if ! command -v go >/dev/null || ! command -v jq >/dev/null || ! command -v rsync >/dev/null || ! command -v dpkg-source >/dev/null; then
  apt-get install -y -qq golang-go jq rsync dpkg-dev >/dev/null
fi
SRC=$CACHE/src/k8s
if [ ! -f "$SRC/Makefile" ]; then
  if [ ! -f /etc/apt/sources.list.d/debian-src.sources ]; then
    cat > /etc/apt/sources.list.d/debian-src.sources <<'SRCS'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRCS
    apt-get update -qq
  fi
  (cd "$CACHE/src" && apt-get source -qq --download-only kubernetes && rm -rf k8s && dpkg-source -x kubernetes_*.dsc k8s >/dev/null)
fi
cd "$SRC"
mkdir -p .go/src/k8s.io
[ -L .go/src/k8s.io/kubernetes ] || ln -s ../../.. .go/src/k8s.io/kubernetes
export GOPATH=$SRC/.go CGO_ENABLED=0 HOME=${HOME:-/root} GOFLAGS=-mod=vendor
# One make call: every command above, then the e2e binary and its helpers.
make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet cmd/kube-proxy cmd/kubectl"
make WHAT="test/e2e/e2e.test vendor/github.com/onsi/ginkgo/ginkgo test/images/agnhost"
for b in $WANT; do install -m 0755 "_output/bin/$b" "$BIN/$b"; done
echo "k8s-build: built into $BIN"
