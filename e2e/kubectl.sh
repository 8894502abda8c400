#!/bin/bash
# kubectl for the e2e cluster: its API server listens only inside the cluster's network namespace.
source "$(dirname "$0")/env.sh"
exec nsenter --net="/run/netns/$NETNS" "$K8S_BIN/kubectl" "$@"
