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
[ -x /bin/nc.openbsd ] || apt-get install -y -qq netcat-openbsd >/dev/null
command -v curl >/dev/null || apt-get install -y -qq curl >/dev/null
command -v wget >/dev/null || apt-get install -y -qq wget >/dev/null
# What agnhost's own image carries for the Services specs (alpine with bash, netcat-openbsd and curl): they run
# `nc -zv -t -w 2`, which busybox's nc cannot (no -z), wget (busybox-static's segfaults: static glibc's NSS) and
# curl, under /bin/sh -c; busybox's sh runs its own applets before PATH, so /bin/sh is dash.
# A change here bumps AGNHOST_CONTENT to rebuild the image.
AGNHOST_CONTENT=3
if [ ! -f "$OUT/pause.tar" ]; then
  clang -static -O2 -o "$OUT/pause" "$CACHE/src/k8s/build/pause/linux/pause.c" -DVERSION=3.2
  "$NODE" "$ROOT/tools/image.ts" --out "$OUT/pause.tar" --ref k8s.gcr.io/pause:3.2 --add "$OUT/pause:/pause" --entrypoint /pause
fi
if [ ! -f "$OUT/agnhost.tar" ] || [ "$(cat "$OUT/agnhost.content" 2>/dev/null)" != "$AGNHOST_CONTENT" ]; then
  links=()
  for l in seq sleep cat echo ls ps date hostname env true false test expr grep nslookup timeout; do links+=(--symlink "/bin/$l=busybox"); done
  "$NODE" "$ROOT/tools/image.ts" --out "$OUT/agnhost.tar" --ref k8s.gcr.io/e2e-test-images/agnhost:2.21 \
    --add "$CACHE/bin/agnhost:/agnhost" --add /bin/busybox:/bin/busybox "${links[@]}" \
    --add /bin/dash:/bin/sh --add /bin/bash:/bin/bash --add /bin/nc.openbsd:/usr/bin/nc --add "$(command -v curl):/usr/bin/curl" \
    --add "$(command -v wget):/usr/bin/wget" --entrypoint /agnhost
  echo "$AGNHOST_CONTENT" > "$OUT/agnhost.content"
fi
ls -la "$OUT"/*.tar
