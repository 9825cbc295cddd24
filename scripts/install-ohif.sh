#!/usr/bin/env bash
# Fetch the prebuilt OHIF Viewer (the published dist/ of @ohif/app) from the npm
# registry into third_party/ohif/, which `synthpacs serve` serves at /ohif/.
# Idempotent: does nothing when the pinned version is already unpacked.
# `npm pack` downloads the tarball only; nothing is installed and no script runs.
set -euo pipefail
OHIF_VERSION="${OHIF_VERSION:-3.13.2}"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${OHIF_DIR:-$ROOT/third_party/ohif}"
STAMP="$DEST/.version"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$OHIF_VERSION" ] && [ -f "$DEST/dist/index.html" ]; then
    echo "OHIF $OHIF_VERSION already in $DEST"
    exit 0
fi
command -v npm >/dev/null || { echo "npm is needed to fetch OHIF (apt-get install npm)" >&2; exit 1; }

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
(cd "$WORK" && npm pack --silent "@ohif/app@$OHIF_VERSION" >/dev/null)
TARBALL="$(ls "$WORK"/ohif-app-*.tgz)"
mkdir -p "$WORK/unpacked"
tar -xzf "$TARBALL" -C "$WORK/unpacked"
if [ ! -f "$WORK/unpacked/package/dist/index.html" ]; then
    echo "@ohif/app@$OHIF_VERSION has no dist/index.html: not a prebuilt viewer" >&2
    exit 1
fi
rm -rf "$DEST.tmp"
mkdir -p "$DEST.tmp"
mv "$WORK/unpacked/package/dist" "$DEST.tmp/dist"
cp "$WORK/unpacked/package/package.json" "$DEST.tmp/package.json"
echo "$OHIF_VERSION" > "$DEST.tmp/.version"
rm -rf "$DEST"
mv "$DEST.tmp" "$DEST"
echo "installed OHIF $OHIF_VERSION in $DEST"
