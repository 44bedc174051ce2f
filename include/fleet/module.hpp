// What every fleet module — fleet::router, fleet::rooms, fleet::relay — is
// configured with, and the shapes they share.
//
// A module lives on one Coordinator session and shares state with the
// modules of the same kind and name on every other instance. Each module's
// options struct extends ModuleOptions with its own fields:
//
//   fleet::rooms::RoomsOptions o;          // a fleet::ModuleOptions
//   o.name = "chat";                       // shared with every "chat" Rooms
//   o.check_interval = std::chrono::seconds(1);
//   o.log_level = fleet::LogLevel::kWarning;
//   auto rooms = fleet::rooms::Rooms::create(*coordinator, o);
//
// Every module behaves the same way in these respects:
//
// - It may be created before or after Coordinator::join(). A module that
//   names this instance (rooms, relay) starts working once the session has
//   joined: until then its calls return FailedPrecondition and its check
//   waits; it takes the instance id the session first joins under
//   (Coordinator::instance_id()) and keeps it for its whole life.
// - Its check runs every check_interval on the module's worker thread, and
//   at once when an event calls for it (a member gone, the connection back).
//   With background = false there is no worker: call run_once().
//   Every wait is on the Coordinator's Clock: with a ManualClock, advancing
//   the clock runs the checks that fall due.
// - After the connection to the backend was interrupted it re-reads what it
//   mirrors; after the backend lost its data it first puts back what this
//   instance owns.
// - Application callbacks run on the module's callback thread, one at a
//   time, in the order of the events; never on the Coordinator's event
//   thread. They may call any method of their module. (Handlers of
//   requests across instances have a thread of their own: rooms.hpp.)
// - The Coordinator must outlive the module: destroy the module first.
//   Destruction stops the worker and the callback thread; callbacks not
//   yet delivered are dropped. Don't destroy a module from its callbacks.
#ifndef FLEET_MODULE_HPP_
#define FLEET_MODULE_HPP_

#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "fleet/log.hpp"

namespace fleet {

// A module's name: name rules (names.hpp), at most this long.
inline constexpr std::size_t kMaxModuleNameBytes = 48;

struct ModuleOptions {
  // The module's namespace inside the Coordinator's: modules of one kind
  // and name share their state (a router's pool, a relay's sessions, a
  // rooms namespace).
  std::string name = "default";
  // How often the check runs: the module publishes what it reports,
  // re-reads what it needs, and handles instances that are gone. > 0.
  std::chrono::milliseconds check_interval{500};
  // false: no worker thread; call run_once() yourself (tests, event
  // loops). Callbacks still run on the module's callback thread.
  bool background = true;
  LogSink* log_sink = nullptr;           // nullptr: stderr_log_sink()
  LogLevel log_level = LogLevel::kInfo;  // lines below it are not written
};

// Validates what every module checks the same way: InvalidArgument naming
// `kind` ("rooms", ...) for a bad name or a non-positive check_interval.
absl::Status validate_module_options(const ModuleOptions& options, std::string_view kind);

// One instance's answer to a request across instances.
struct Reply {
  std::string instance;
  absl::Status status;  // the handler's error, if it failed
  std::string body;
};

// A request to every live instance: what came back before the timeout.
struct RequestResult {
  std::vector<Reply> replies;        // ordered by instance
  std::vector<std::string> missing;  // expected, not answered
  // OK when every expected instance answered; DeadlineExceeded naming the
  // missing ones otherwise (the replies are still there).
  absl::Status status;
};

}  // namespace fleet

#endif  // FLEET_MODULE_HPP_
