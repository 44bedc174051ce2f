// TLS for Redis connections (rediss:// URLs): OpenSSL, with the handshake
// handed to hiredis_ssl. Compiled to stubs that refuse TLS when fleet is
// built without it (FLEET_TLS=OFF, or hiredis 0.14, which has no TLS).
//
// fleet makes the OpenSSL objects itself rather than through
// redisCreateSSLContext(): hiredis checks the server's certificate chain
// but not that the certificate names the server, and fleet checks both.
#ifndef FLEET_SRC_REDIS_TLS_HPP_
#define FLEET_SRC_REDIS_TLS_HPP_

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fleet/redis_coordinator.hpp"

struct redisContext;

namespace fleet::internal {

class TlsContext {
 public:
  // Loads the trust store, and the client certificate and key if given.
  // `host` is the URL's host: the name to verify unless
  // options.server_name says otherwise. InvalidArgument naming the option
  // whose file cannot be used; InvalidArgument on a build without TLS.
  static absl::StatusOr<std::shared_ptr<const TlsContext>> create(
      const RedisTlsOptions& options, const std::string& host);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  // The TLS handshake on `ctx`, connected and not used yet, whose socket
  // timeouts bound it. Unauthenticated when the server's certificate fails
  // verification; Unavailable when the handshake fails otherwise (a port
  // that does not speak TLS, the connection dropped).
  absl::Status handshake(redisContext* ctx, std::string_view where) const;

  // The reason for the last TLS failure on this thread (OpenSSL's error
  // queue), or empty; clears the queue.
  static std::string take_error();
  // Clears this thread's OpenSSL error queue before an I/O on a TLS
  // connection, so that take_error() reports that I/O's failure only.
  static void clear_errors();

 private:
  struct Impl;
  explicit TlsContext(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_REDIS_TLS_HPP_
