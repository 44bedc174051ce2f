# Provides the imported target hiredis::hiredis.
#
# hiredis 1.x (Conan, vcpkg, upstream install) ships hiredisConfig.cmake with
# that target. Debian's hiredis 0.14 ships a HiredisConfig.cmake that only sets
# HIREDIS_INCLUDE_DIRS / HIREDIS_LIBRARIES, and a pkg-config file; for it we
# build the imported target ourselves.
if(TARGET hiredis::hiredis)
  return()
endif()

find_package(hiredis CONFIG QUIET)
if(TARGET hiredis::hiredis)
  return()
endif()

find_path(FLEET_HIREDIS_INCLUDE_DIR hiredis/hiredis.h)
find_library(FLEET_HIREDIS_LIBRARY NAMES hiredis)
if(NOT FLEET_HIREDIS_INCLUDE_DIR OR NOT FLEET_HIREDIS_LIBRARY)
  message(FATAL_ERROR
    "fleet: hiredis not found (install libhiredis-dev, or hiredis 1.x with "
    "its CMake package, and set CMAKE_PREFIX_PATH)")
endif()

add_library(hiredis::hiredis UNKNOWN IMPORTED)
set_target_properties(hiredis::hiredis PROPERTIES
  IMPORTED_LOCATION "${FLEET_HIREDIS_LIBRARY}"
  INTERFACE_INCLUDE_DIRECTORIES "${FLEET_HIREDIS_INCLUDE_DIR}")
