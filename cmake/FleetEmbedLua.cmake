# fleet_embed_lua(<output .inc> <lua files...>) writes one
#   {"<name>", R"fleetlua(<source>)fleetlua"},
# line per script, to be included in an array initialiser. Runs at configure
# time; editing a .lua file re-runs configure (CMAKE_CONFIGURE_DEPENDS).
function(fleet_embed_lua output)
  set(content "// Generated from src/redis/lua/*.lua by cmake/FleetEmbedLua.cmake.\n")
  foreach(file IN LISTS ARGN)
    get_filename_component(name "${file}" NAME_WE)
    file(READ "${file}" source)
    string(FIND "${source}" ")fleetlua" clash)
    if(NOT clash EQUAL -1)
      message(FATAL_ERROR "${file} contains the raw-string delimiter )fleetlua")
    endif()
    string(APPEND content "{\"${name}\", R\"fleetlua(${source})fleetlua\"},\n")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${file}")
  endforeach()
  file(CONFIGURE OUTPUT "${output}" CONTENT "${content}" @ONLY)
endfunction()
