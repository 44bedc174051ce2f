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
# nlohmann_json: the examples, tests and benchmarks only (the library writes
# its records itself, src/internal/record.hpp); consumers never need it.
if(NOT FLEET_FINDING_FOR_CONSUMER AND
   (FLEET_BUILD_EXAMPLES OR FLEET_BUILD_TESTS OR FLEET_BUILD_BENCHMARKS))
  find_package(nlohmann_json CONFIG REQUIRED)
endif()
include(FleetFindHiredis)
_fleet_find(Threads)
