#!/usr/bin/env bash
# System tools the tests drive as real peers: dcmtk and dicom3tools (Debian),
# and Chromium for the OHIF end-to-end test (headless, software WebGL).
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends dcmtk dicom3tools chromium >/dev/null
echo "installed: $(command -v findscu) $(command -v dciodvfy) $(command -v chromium)"
