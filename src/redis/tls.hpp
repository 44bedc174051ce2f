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

// Unauthenticated: the server at `where` wanted a client certificate and
// the connection had none (`detail`: how the refusal showed).
absl::Status missing_client_certificate(std::string_view where, std::string_view detail);

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
  // verification, or the server wanted a client certificate and this
  // context has none; Unavailable when the handshake fails otherwise (a
  // port that does not speak TLS, the connection dropped).
  //
  // On success: whether the server asked for a client certificate that
  // this context does not have. With TLS 1.3 a server that requires one
  // (Redis's tls-auth-clients yes) refuses only after the handshake, when
  // the client's first command may already be on its way, so the refusal
  // often arrives as a reset connection rather than as its alert: the
  // caller uses this to say why.
  absl::StatusOr<bool> handshake(redisContext* ctx, std::string_view where) const;

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
