# Finds fleet's dependencies. Used both by the build and (installed) by
# fleetConfig.cmake, so it must work with only the installed cmake/ files.
include(CMakeFindDependencyMacro)

macro(_fleet_find name)
  if(FLEET_FINDING_FOR_CONSUMER)
    find_dependency(${name} ${ARGN})
  else()
    find_package(${name} ${ARGN} REQUIRED)
  endif()
endmacro()

_fleet_find(absl CONFIG)
_fleet_find(fmt CONFIG)
_fleet_find(nlohmann_json CONFIG)
include(FleetFindHiredis)
_fleet_find(Threads)
