// The whole public API of fleet in one include.
#ifndef FLEET_FLEET_HPP_
#define FLEET_FLEET_HPP_

#include "fleet/clock.hpp"
#include "fleet/coordinator.hpp"
#include "fleet/lease_guard.hpp"
#include "fleet/local_coordinator.hpp"
#include "fleet/log.hpp"
#include "fleet/names.hpp"
#include "fleet/redis_coordinator.hpp"
#include "fleet/relay.hpp"
#include "fleet/rooms.hpp"
#include "fleet/router.hpp"
#include "fleet/subscription.hpp"
#include "fleet/types.hpp"
#include "fleet/version.hpp"

#endif  // FLEET_FLEET_HPP_
