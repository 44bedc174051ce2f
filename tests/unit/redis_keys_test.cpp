// The Redis key layout is written in three places that must agree: the
// key names the C++ builds (src/redis/keys.hpp), the key kinds the Lua
// scripts build from the namespace prefix (src/redis/lua/*.lua), and the
// reference (docs/redis-keys.md). Read from the source tree.
#include <filesystem>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>

#include "catch.hpp"
#include "lua_scripts.hpp"

namespace fleet::testing {
namespace {

namespace fs = std::filesystem;

std::string read(const fs::path& p) {
  std::ifstream in(p);
  REQUIRE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::set<std::string> matches(const std::string& text, const std::string& pattern) {
  std::set<std::string> out;
  const std::regex re(pattern);
  for (auto it = std::sregex_iterator(text.begin(), text.end(), re);
       it != std::sregex_iterator(); ++it) {
    out.insert((*it)[1].str());
  }
  return out;
}

std::string joined(const std::set<std::string>& s) {
  std::string out;
  for (const auto& x : s) out += x + " ";
  return out;
}

TEST_CASE("the key kinds of keys.hpp, the Lua scripts and docs/redis-keys.md agree",
          "[unit][redis][keys]") {
  const fs::path root = FLEET_SOURCE_DIR;
  const std::string keys = read(root / "src/redis/keys.hpp");
  // prefix + "sessions" (a key) and cat("node:", id) (a kind of key).
  std::set<std::string> cpp = matches(keys, R"re(prefix \+ "([a-z_]+)")re");
  const std::set<std::string> cpp_kinds = matches(keys, R"re(cat\("([a-z_]+:)")re");
  cpp.insert(cpp_kinds.begin(), cpp_kinds.end());
  REQUIRE(cpp.size() > 20);

  std::set<std::string> lua;
  std::size_t scripts = 0;
  for (const auto& e : fs::directory_iterator(root / "src/redis/lua")) {
    if (e.path().extension() != ".lua") continue;
    if (e.path().stem() != "common") ++scripts;
    for (auto& kind : matches(read(e.path()), R"re('([a-z_]+:)')re")) lua.insert(kind);
  }
  CHECK(scripts == internal::kScriptCount);  // one Script per file
  REQUIRE_FALSE(lua.empty());
  std::set<std::string> unknown;
  for (const auto& k : lua) {
    if (cpp.count(k) == 0) unknown.insert(k);
  }
  INFO("Lua builds keys keys.hpp does not name: " << joined(unknown));
  CHECK(unknown.empty());

  const std::set<std::string> docs =
      matches(read(root / "docs/redis-keys.md"), R"re(`P:([a-z_]+:?))re");
  std::set<std::string> undocumented, stale;
  for (const auto& k : cpp) {
    if (docs.count(k) == 0) undocumented.insert(k);
  }
  for (const auto& k : docs) {
    if (cpp.count(k) == 0) stale.insert(k);
  }
  INFO("keys.hpp names keys docs/redis-keys.md lacks: " << joined(undocumented));
  CHECK(undocumented.empty());
  INFO("docs/redis-keys.md lists keys keys.hpp does not name: " << joined(stale));
  CHECK(stale.empty());
}

TEST_CASE("every script is named after its file", "[unit][redis][keys]") {
  CHECK(
      internal::kScriptNames[static_cast<std::size_t>(internal::Script::kSlotAcquire)] ==
      "slot_acquire");
  CHECK(internal::kScriptNames[static_cast<std::size_t>(internal::Script::kSync)] ==
        "sync");
}

}  // namespace
}  // namespace fleet::testing
