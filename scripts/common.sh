# Shared by scripts/test, scripts/demo and scripts/bench (sourced, not run).
# Installs the Debian packages fleet needs when they are missing, and builds.
set -euo pipefail

FLEET_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
FLEET_PACKAGES=(
  build-essential cmake pkg-config
  libhiredis-dev nlohmann-json3-dev libfmt-dev libabsl-dev catch2 libcpp-httplib-dev
  libboost-dev
  redis-server
)

# apt-get update once, then install what is missing; nothing if all present.
fleet_install_deps() {
  local missing=() p
  for p in "${FLEET_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$p")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "fleet: installing missing packages: ${missing[*]}"
  # Once per run: .ci/run's second script (test-compat) needs two packages
  # more than the first, and the lists the first fetched are still fresh.
  # (The lists' own mtimes are the archive's dates, not the fetch's.)
  local stamp=/var/lib/apt/lists/partial/.fleet-updated
  if [ -z "$(find "$stamp" -newermt '-60 minutes' 2>/dev/null)" ]; then
    $sudo apt-get update
    $sudo touch "$stamp"
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y --no-install-recommends "${missing[@]}"
}

# fleet_build <build dir> [cmake args...]
fleet_build() {
  local dir=$1
  shift
  cmake -S "$FLEET_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@"
  cmake --build "$dir" -j2
}
