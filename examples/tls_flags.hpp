// The TLS flags of the example programs that talk to Redis (fleetctl,
// fleet-gateway), for rediss:// URLs:
//   --redis-tls-ca FILE  --redis-tls-ca-dir DIR  --redis-tls-cert FILE
//   --redis-tls-key FILE  --redis-tls-server-name NAME
#ifndef FLEET_EXAMPLES_TLS_FLAGS_HPP_
#define FLEET_EXAMPLES_TLS_FLAGS_HPP_

#include <string>

#include "fleet/redis_coordinator.hpp"

// A string literal, for the programs' usage texts.
#define FLEET_TLS_FLAGS_USAGE                                                            \
  "         (TLS, for rediss:// URLs:) [--redis-tls-ca FILE] [--redis-tls-ca-dir DIR]\n" \
  "         [--redis-tls-cert FILE] [--redis-tls-key FILE] [--redis-tls-server-name "    \
  "NAME]\n"

// Whether `flag` is a TLS flag; if so its value goes into `tls`.
inline bool tls_flag(const std::string& flag, const std::string& value,
                     fleet::RedisTlsOptions* tls) {
  if (flag == "--redis-tls-ca") {
    tls->ca_file = value;
  } else if (flag == "--redis-tls-ca-dir") {
    tls->ca_dir = value;
  } else if (flag == "--redis-tls-cert") {
    tls->cert_file = value;
  } else if (flag == "--redis-tls-key") {
    tls->key_file = value;
  } else if (flag == "--redis-tls-server-name") {
    tls->server_name = value;
  } else {
    return false;
  }
  return true;
}

#endif  // FLEET_EXAMPLES_TLS_FLAGS_HPP_
