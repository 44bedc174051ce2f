include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(FLEET_CMAKE_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/fleet")

install(TARGETS fleet EXPORT fleetTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR}
  INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY include/fleet DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT fleetTargets NAMESPACE fleet:: DESTINATION ${FLEET_CMAKE_DIR})

configure_package_config_file(cmake/fleetConfig.cmake.in
  "${PROJECT_BINARY_DIR}/fleetConfig.cmake"
  INSTALL_DESTINATION ${FLEET_CMAKE_DIR})
write_basic_package_version_file("${PROJECT_BINARY_DIR}/fleetConfigVersion.cmake"
  COMPATIBILITY SameMinorVersion)
install(FILES
  "${PROJECT_BINARY_DIR}/fleetConfig.cmake"
  "${PROJECT_BINARY_DIR}/fleetConfigVersion.cmake"
  cmake/FleetDependencies.cmake
  cmake/FleetFindHiredis.cmake
  DESTINATION ${FLEET_CMAKE_DIR})
install(FILES docs/local-coordinator.md README.md LICENSE
  DESTINATION ${CMAKE_INSTALL_DOCDIR})
