#!/usr/bin/env bash
# fleet's vcpkg port (ports/fleet) as an overlay port: test_package/ built
# in manifest mode with the port and the vcpkg toolchain, then run.
#   vcpkg_install.sh SOURCE_DIR WORK_DIR
# Exits 77 (ctest: skipped, and said so) where no vcpkg is on PATH.
set -euo pipefail
src=$1
work=$2

if ! command -v vcpkg >/dev/null 2>&1; then
  echo "SKIPPED: no 'vcpkg' executable on PATH, so the vcpkg port was not run here;"
  echo "scripts/test-compat builds and installs fleet the way the port does instead"
  echo "(docs/packaging.md)."
  exit 77
fi
root=${VCPKG_ROOT:-$(dirname "$(readlink -f "$(command -v vcpkg)")")}
if [ ! -f "$root/scripts/buildsystems/vcpkg.cmake" ]; then
  echo "SKIPPED: vcpkg found, but not its root (set VCPKG_ROOT)"
  exit 77
fi

rm -rf "$work"
mkdir -p "$work/manifest"
cat >"$work/manifest/vcpkg.json" <<'MANIFEST'
{ "name": "fleet-test-package", "version": "0.0.0", "dependencies": ["fleet"] }
MANIFEST
cmake -S "$src/test_package" -B "$work/build" -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_TOOLCHAIN_FILE="$root/scripts/buildsystems/vcpkg.cmake" \
  -DVCPKG_MANIFEST_DIR="$work/manifest" -DVCPKG_OVERLAY_PORTS="$src/ports"
cmake --build "$work/build" -j2
"$work/build/test_package"
