# Finds cpp-httplib for fleet-gateway, fake-backend and their tests (the
# library itself does not use it): the CMake package where one exists
# (vcpkg, Conan: header-only), else Debian's compiled library through
# pkg-config (libcpp-httplib-dev). Sets FLEET_HTTPLIB to the target to link.
find_package(httplib CONFIG QUIET)
if(TARGET httplib::httplib)
  set(FLEET_HTTPLIB httplib::httplib)
else()
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(FLEET_CPP_HTTPLIB QUIET IMPORTED_TARGET cpp-httplib)
  endif()
  if(TARGET PkgConfig::FLEET_CPP_HTTPLIB)
    set(FLEET_HTTPLIB PkgConfig::FLEET_CPP_HTTPLIB)
  endif()
endif()
