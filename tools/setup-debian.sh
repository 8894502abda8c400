#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) to build, run and test Sluice:
# the eBPF toolchain and network tools from apt, then the npm dependencies
# (Node 26 comes from the pinned `node` package).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  clang llvm libbpf-dev bpftool      # compile and inspect the eBPF datapath
  iproute2 iputils-ping              # netns, veth, routes; ping for probes and tests
  iptables nftables                  # tests check that Sluice adds no rules
  containernetworking-plugins        # reference plugins, peers in benchmarks
  golang-go golang-github-appc-cni-dev  # CNI conformance driver built on libcni (conformance/cni)
  iperf3 python3 python3-scapy       # benchmarks, crafted packets
  chromium                           # headless browser of the service map's test (test/ui-browser.test.ts)
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-debian.sh: run as root (it installs packages; Sluice itself needs root for netns and eBPF)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${APT_PACKAGES[@]}" >/dev/null
npm ci --no-audit --no-fund
