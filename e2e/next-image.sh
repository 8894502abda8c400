#!/bin/bash
# The image a rolling update moves to (issue 33): this commit built again with a datapath of other bytes and the same
# map layouts (BPF_EXTRA_CFLAGS=-gdwarf-4: other debug info), in a clone of its own so dist/ and install/ stay as
# they are. Writes dist/sluice-image-next.tar and prints the reference the DaemonSet is set to (REPO@DIGEST).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/sluice-next-image.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
git clone -q "$ROOT" "$WORK/src"
ln -s "$ROOT/node_modules" "$WORK/src/node_modules"
make -s -C "$WORK/src" BPF_EXTRA_CFLAGS=-gdwarf-4 dist/sluice-image.tar >&2
cp "$WORK/src/dist/sluice-image.tar" "$ROOT/dist/sluice-image-next.tar"
grep -m1 -o 'localhost/sluice[^ ]*@sha256:[0-9a-f]*' "$WORK/src/install/30-daemonset.yaml"
