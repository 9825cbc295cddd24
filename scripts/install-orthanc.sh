#!/usr/bin/env bash
# Orthanc with its DICOMweb plugin (Debian), the archive the side-by-side benchmark
# compares SynthPACS with (benchmarks/versus_orthanc.py). The packaged service is
# not started: the benchmark runs its own Orthanc on loopback ports.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d keeps the package from starting its own service on 0.0.0.0:4242/8042
echo 'exit 101' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
$SUDO chmod +x /usr/sbin/policy-rc.d
trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
$SUDO apt-get install -y -qq --no-install-recommends orthanc orthanc-dicomweb >/dev/null
echo "installed: $(command -v Orthanc) $(ls /usr/share/orthanc/plugins/libOrthancDicomWeb.so 2>/dev/null || true)"
