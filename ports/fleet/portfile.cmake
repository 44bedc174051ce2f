# vcpkg port of fleet, used as an overlay port from this source tree:
#   vcpkg install fleet --overlay-ports=<fleet checkout>/ports
# (docs/packaging.md). A port for a registry would take SOURCE_PATH from
# vcpkg_from_github() at a release tag instead.
get_filename_component(SOURCE_PATH "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)

# FLEET_TLS is a tri-state (AUTO/ON/OFF): the feature makes it ON or OFF,
# never AUTO, so that what the port installs does not depend on what else
# happens to be installed.
if("tls" IN_LIST FEATURES)
  set(tls ON)
else()
  set(tls OFF)
endif()

vcpkg_cmake_configure(
  SOURCE_PATH "${SOURCE_PATH}"
  OPTIONS
    -DFLEET_BUILD_TESTS=OFF
    -DFLEET_BUILD_EXAMPLES=OFF
    -DFLEET_BUILD_BENCHMARKS=OFF
    -DFLEET_INSTALL=ON
    -DFLEET_TLS=${tls}
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME fleet CONFIG_PATH lib/cmake/fleet)

file(REMOVE_RECURSE
  "${CURRENT_PACKAGES_DIR}/debug/include"
  "${CURRENT_PACKAGES_DIR}/debug/share")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
