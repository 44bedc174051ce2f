# fleet_embed_lua(<output dir> <common.lua> <script .lua files...>) writes
#   <dir>/lua_scripts.hpp  enum class Script { kAcquire, kSlotAcquire, ... }
#                          (one per script file), kScriptCount, kScriptNames[]
#   <dir>/lua_sources.inc  kScriptSources[] and kCommonLua (the prelude of
#                          every script but "standalone" ones), for the one
#                          file that loads them (src/redis/scripts.cpp)
# so a script is named in one place — its file. C++ that names a script
# whose file is gone does not compile. Runs at configure time; adding,
# removing or editing a .lua file re-runs configure (CMAKE_CONFIGURE_DEPENDS).
function(fleet_embed_lua dir common)
  set(names "")
  set(enums "")
  set(sources "")
  set(count 0)
  list(SORT ARGN)
  foreach(file IN LISTS ARGN)
    get_filename_component(name "${file}" NAME_WE)
    if(NOT name MATCHES "^[a-z][a-z0-9_]*$")
      message(FATAL_ERROR "${file}: script file names are lower_snake_case")
    endif()
    file(READ "${file}" source)
    string(FIND "${source}" ")fleetlua" clash)
    if(NOT clash EQUAL -1)
      message(FATAL_ERROR "${file} contains the raw-string delimiter )fleetlua")
    endif()
    # slot_acquire -> kSlotAcquire
    string(REPLACE "_" ";" words "${name}")
    set(enum "k")
    foreach(word IN LISTS words)
      string(SUBSTRING "${word}" 0 1 first)
      string(SUBSTRING "${word}" 1 -1 rest)
      string(TOUPPER "${first}" first)
      string(APPEND enum "${first}${rest}")
    endforeach()
    string(APPEND enums "  ${enum},\n")
    string(APPEND names "    \"${name}\",\n")
    string(APPEND sources "    R\"fleetlua(${source})fleetlua\",\n")
    math(EXPR count "${count} + 1")
    set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${file}")
  endforeach()
  file(READ "${common}" common_source)
  set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS "${common}")
  set(header "// Generated from src/redis/lua/*.lua by cmake/FleetEmbedLua.cmake: do not edit.
#ifndef FLEET_GENERATED_LUA_SCRIPTS_HPP_
#define FLEET_GENERATED_LUA_SCRIPTS_HPP_

#include <cstddef>
#include <string_view>

namespace fleet::internal {

enum class Script {
${enums}};
inline constexpr std::size_t kScriptCount = ${count};
inline constexpr std::string_view kScriptNames[kScriptCount] = {
${names}};

}  // namespace fleet::internal

#endif  // FLEET_GENERATED_LUA_SCRIPTS_HPP_
")
  file(CONFIGURE OUTPUT "${dir}/lua_scripts.hpp" CONTENT "${header}" @ONLY)
  set(inc "// Generated from src/redis/lua/*.lua by cmake/FleetEmbedLua.cmake: do not edit.
// Included once, by src/redis/scripts.cpp, inside namespace fleet::internal.
constexpr std::string_view kScriptSources[kScriptCount] = {
${sources}};
constexpr std::string_view kCommonLua = R\"fleetlua(${common_source})fleetlua\";
")
  file(CONFIGURE OUTPUT "${dir}/lua_sources.inc" CONTENT "${inc}" @ONLY)
endfunction()
