// What every part of a Rooms shares: the session, the options, the module
// core (logger, live members, callback thread), and this instance's id.
#ifndef FLEET_SRC_ROOMS_CONTEXT_HPP_
#define FLEET_SRC_ROOMS_CONTEXT_HPP_

#include <string>

#include "fleet/rooms.hpp"
#include "module/core.hpp"

namespace fleet::rooms::internal_rooms {

struct Context {
  Coordinator& c;
  const RoomsOptions& o;
  internal::ModuleCore& core;
  // The instance (and node) id: set by the attach, before any part is used
  // and before any of their subscriptions exist.
  std::string me;

  const internal::Logger& log() const { return core.log(); }
  // Runs an application callback on the Rooms' callback thread.
  template <typename F, typename Arg>
  void post(const F& callback, Arg arg) {
    if (callback) core.post_callback([&callback, a = std::move(arg)] { callback(a); });
  }
};

}  // namespace fleet::rooms::internal_rooms

#endif  // FLEET_SRC_ROOMS_CONTEXT_HPP_
