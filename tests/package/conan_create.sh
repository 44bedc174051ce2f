#!/usr/bin/env bash
# `conan create` of fleet's recipe (conanfile.py) and its test_package/,
# with every dependency taken from the system through Conan 2's
# [platform_requires] (nothing downloaded): the versions are read from
# pkg-config, so with scripts/test-compat they are its hiredis 1.x and
# OpenSSL, and Debian's fmt, nlohmann_json and Abseil.
#   conan_create.sh SOURCE_DIR WORK_DIR
# Exits 77 (ctest: skipped, and said so) where no Conan 2 client is on PATH
# or the system's hiredis is older than the recipe accepts.
set -euo pipefail
src=$1
work=$2

if ! command -v conan >/dev/null 2>&1; then
  echo "SKIPPED: no 'conan' executable on PATH, so the Conan recipe was not run here;"
  echo "scripts/test-compat builds and installs fleet the way the recipe does instead"
  echo "(docs/packaging.md)."
  exit 77
fi
if ! conan --version | grep -q "version 2\."; then
  echo "SKIPPED: $(conan --version) is not Conan 2"
  exit 77
fi

version_of() {  # pkg-config module → its version, or nothing
  pkg-config --modversion "$1" 2>/dev/null || true
}
hiredis=$(version_of hiredis)
case $hiredis in
  1.*) ;;
  *)
    echo "SKIPPED: the system's hiredis is '${hiredis:-missing}'; the recipe needs 1.x"
    echo "(run this under scripts/test-compat, whose prefix has hiredis 1.3.0)"
    exit 77
    ;;
esac

rm -rf "$work"
mkdir -p "$work"
export CONAN_HOME="$work/home"
conan profile detect --force >/dev/null
cat >"$work/system.profile" <<PROFILE
include(default)
[settings]
compiler.cppstd=17
build_type=Release
[platform_requires]
hiredis/$hiredis
fmt/$(version_of fmt)
nlohmann_json/$(version_of nlohmann_json)
abseil/$(version_of absl_status)
openssl/$(version_of openssl)
[buildenv]
CMAKE_PREFIX_PATH=${CMAKE_PREFIX_PATH:-}
PROFILE
echo "== profile:"
cat "$work/system.profile"
conan create "$src" -pr:a "$work/system.profile" --build=missing
