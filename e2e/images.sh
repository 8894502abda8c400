#!/bin/bash
# Builds the images the e2e cluster needs as OCI archives, with tools/image.ts (no registry, no engine):
# the pause image (containerd's sandbox image) and agnhost under the exact names Kubernetes 1.20's e2e asks for.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${SLUICE_K8S_CACHE:-/var/cache/sluice-k8s}
OUT=$CACHE/images
NODE=$ROOT/node_modules/.bin/node
mkdir -p "$OUT"
[ -x /bin/busybox ] || apt-get install -y -qq busybox-static >/dev/null
if [ ! -f "$OUT/pause.tar" ]; then
  clang -static -O2 -o "$OUT/pause" "$CACHE/src/k8s/build/pause/linux/pause.c" -DVERSION=3.2
  "$NODE" "$ROOT/tools/image.ts" --out "$OUT/pause.tar" --ref k8s.gcr.io/pause:3.2 --add "$OUT/pause:/pause" --entrypoint /pause
fi
if [ ! -f "$OUT/agnhost.tar" ]; then
  links=()
  for l in sh seq sleep cat echo nc ls ps date hostname env true false test expr grep; do links+=(--symlink "/bin/$l=busybox"); done
  "$NODE" "$ROOT/tools/image.ts" --out "$OUT/agnhost.tar" --ref k8s.gcr.io/e2e-test-images/agnhost:2.21 \
    --add "$CACHE/bin/agnhost:/agnhost" --add /bin/busybox:/bin/busybox "${links[@]}" --entrypoint /agnhost
fi
ls -la "$OUT"/*.tar
