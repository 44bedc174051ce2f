# Provides the imported target hiredis::hiredis, and hiredis::hiredis_ssl
# when TLS is wanted and available; sets FLEET_TLS_ENABLED.
#
# hiredis 1.x (Conan, vcpkg, upstream install) ships hiredisConfig.cmake
# with that target, and with ENABLE_SSL hiredis_sslConfig.cmake with
# hiredis::hiredis_ssl (Conan's recipe puts both targets in one package).
# Debian's hiredis 0.14 ships a HiredisConfig.cmake that only sets
# HIREDIS_INCLUDE_DIRS / HIREDIS_LIBRARIES, and a pkg-config file; for it we
# build the imported target ourselves. It has no TLS.
#
# FLEET_TLS: AUTO (TLS when hiredis_ssl and OpenSSL are found), ON (they
# must be), OFF. The installed fleetConfig.cmake sets it to what the build
# used, so that a consumer finds what fleet links.
if(NOT DEFINED FLEET_TLS)
  set(FLEET_TLS AUTO)
endif()

if(NOT TARGET hiredis::hiredis)
  find_package(hiredis CONFIG QUIET)
endif()
if(NOT TARGET hiredis::hiredis)
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
endif()

set(FLEET_TLS_ENABLED OFF)
if(NOT FLEET_TLS STREQUAL "OFF")
  if(NOT TARGET hiredis::hiredis_ssl)
    find_package(hiredis_ssl CONFIG QUIET)
  endif()
  if(TARGET hiredis::hiredis_ssl)
    find_package(OpenSSL QUIET)
  endif()
  if(TARGET hiredis::hiredis_ssl AND TARGET OpenSSL::SSL)
    set(FLEET_TLS_ENABLED ON)
  elseif(FLEET_TLS STREQUAL "ON")
    message(FATAL_ERROR
      "fleet: FLEET_TLS=ON needs hiredis 1.x built with hiredis_ssl (ENABLE_SSL) and "
      "OpenSSL; found hiredis_ssl: ${hiredis_ssl_FOUND}, OpenSSL: ${OPENSSL_FOUND}")
  endif()
endif()
if(NOT FLEET_FINDING_FOR_CONSUMER)
  message(STATUS "fleet: TLS to Redis (rediss://): ${FLEET_TLS_ENABLED}")
endif()
