// TLS to Redis (rediss://), against real redis-servers listening with
// --tls-port and certificates from a throw-away CA made by openssl in the
// test (tests/support/test_pki.hpp). The cases that need TLS run in builds
// that have it (FLEET_TEST_TLS_BUILD: hiredis 1.x with hiredis_ssl, as in
// scripts/test-compat); every build checks that what it lacks is refused
// clearly.
#include <unistd.h>

#include <fstream>

#include "capture_sink.hpp"
#include "fast_options.hpp"
#include "fault_proxy.hpp"
#include "fleet/redis_coordinator.hpp"
#include "process.hpp"
#include "recorder.hpp"
#include "redis_server.hpp"
#include "status.hpp"
#include "test_pki.hpp"

namespace fleet::testing {
namespace {

RedisOptions tls_options(const std::string& url, LogSink* sink) {
  return fast_options(url, sink, "tls-" + std::to_string(::getpid()));
}

std::string message_of(const absl::Status& st) { return std::string(st.message()); }

TEST_CASE("TLS options with a redis:// URL are InvalidArgument: no silent plain text",
          "[redis][tls]") {
  RedisOptions o = tls_options("redis://127.0.0.1:6379/0", quiet_log_sink());
  o.tls.ca_file = "/etc/ssl/certs/ca-certificates.crt";
  auto c = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(c, kInvalidArgument);
  CHECK(message_of(c.status()).find("not rediss://") != std::string::npos);

  o.tls = RedisTlsOptions{};
  o.tls.verify_peer = false;
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
}

#if !FLEET_TEST_TLS_BUILD

TEST_CASE("a build without TLS refuses rediss:// with InvalidArgument and says why",
          "[redis][tls]") {
  CHECK_FALSE(tls_supported());
  auto c = RedisCoordinator::connect(
      tls_options("rediss://:pw-Zq9@127.0.0.1:6379/0", quiet_log_sink()));
  FLEET_REQUIRE_CODE(c, kInvalidArgument);
  const std::string why = message_of(c.status());
  CHECK(why.find("this build of fleet has none") != std::string::npos);
  CHECK(why.find("FLEET_TLS=ON") != std::string::npos);
  CHECK(why.find("Zq9") == std::string::npos);
}

#else  // FLEET_TEST_TLS_BUILD

// A redis-server with TLS on a second port, certificates from the shared
// test CA.
std::unique_ptr<RedisServer> start_tls_server(std::vector<std::string> args = {},
                                              bool require_client_cert = false) {
  const TestPki& pki = shared_test_pki();
  RedisServer::Options options;
  options.args = std::move(args);
  options.tls = RedisServer::Tls{pki.server_cert(), pki.server_key(), pki.ca_cert(),
                                 require_client_cert};
  auto server = RedisServer::start(std::move(options));
  REQUIRE(server.ok());
  return *std::move(server);
}

TEST_CASE("rediss:// with the CA: every connection of the session speaks TLS",
          "[redis][tls]") {
  REQUIRE(tls_supported());
  auto server = start_tls_server();
  const TestPki& pki = shared_test_pki();
  CaptureSink sink;
  RedisOptions o = tls_options(server->tls_url(), &sink);
  o.tls.ca_file = pki.ca_cert();
  auto a = unwrap(RedisCoordinator::connect(o));
  auto b = unwrap(RedisCoordinator::connect(o));

  // The command pool, the slot lane and the subscriber connection.
  InstanceInfo me;
  me.id = "sfu-a";
  FLEET_REQUIRE_OK(a->join(me));
  auto members = unwrap(b->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.id == "sfu-a");
  CHECK(unwrap(a->claim("rooms", "r1", "sfu-a")).claimed);
  CHECK(unwrap(b->claim("rooms", "r1", "sfu-b")).entry.value == "sfu-a");
  SlotRequest slots;
  slots.candidates = {SlotCandidate{"n1", 1, 0, 0}};
  auto grant = unwrap(a->acquire_slot("pool", slots));
  REQUIRE(grant.has_value());
  CHECK(grant->target == "n1");
  CHECK_FALSE(unwrap(b->acquire_slot("pool", slots)).has_value());
  Recorder<Message> got;
  auto sub = unwrap(b->subscribe("news", got.callback()));
  FLEET_REQUIRE_OK(a->publish("news", "over tls"));
  REQUIRE(got.wait_count(1));
  CHECK(got.events()[0].payload == "over tls");

  // What they wrote is in the server (read over its plain port).
  CHECK(unwrap(server->command(
            {"HGET", "fleet:{" + o.namespace_name + "}:slots:pool", "n1"})) == "1");
  // The TLS port speaks only TLS: a plain connection to it does not work.
  RedisOptions plain = tls_options(
      "redis://127.0.0.1:" + std::to_string(server->tls_port()) + "/0", quiet_log_sink());
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(plain), kUnavailable);
  // And the plain port does not speak TLS: a clear Unavailable, no hang.
  RedisOptions wrong_port = o;
  wrong_port.url = "rediss://127.0.0.1:" + std::to_string(server->port()) + "/0";
  wrong_port.log_sink = quiet_log_sink();
  auto refused = RedisCoordinator::connect(wrong_port);
  FLEET_REQUIRE_CODE(refused, kUnavailable);
  CHECK(message_of(refused.status()).find("TLS handshake") != std::string::npos);
  CHECK(message_of(refused.status()).find("rediss://127.0.0.1") != std::string::npos);
}

TEST_CASE("the server's certificate is verified: its CA and its name", "[redis][tls]") {
  auto server = start_tls_server();
  const TestPki& pki = shared_test_pki();
  const std::string port = std::to_string(server->tls_port());
  RedisOptions o = tls_options(server->tls_url(), quiet_log_sink());

  // Another CA signed nothing the server holds.
  o.tls.ca_file = pki.other_ca_cert();
  auto untrusted = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(untrusted, kUnauthenticated);
  CHECK(message_of(untrusted.status()).find("failed verification") != std::string::npos);

  // The right CA, but a name the certificate does not carry.
  o.tls.ca_file = pki.ca_cert();
  o.tls.server_name = "redis.example.com";
  auto misnamed = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(misnamed, kUnauthenticated);
  CHECK(message_of(misnamed.status()).find("redis.example.com") != std::string::npos);

  // A DNS name it does carry, from the URL and from server_name.
  o.tls.server_name.clear();
  o.url = "rediss://localhost:" + port + "/0";
  CHECK(unwrap(unwrap(RedisCoordinator::connect(o))->counter_add("ok", 1)) == 1);
  o.url = server->tls_url();
  o.tls.server_name = "localhost";
  CHECK(unwrap(unwrap(RedisCoordinator::connect(o))->counter_add("ok", 1)) == 2);

  // verify_peer = false: encrypted, unchecked (the untrusted CA is ignored).
  o.tls.server_name.clear();
  o.tls.ca_file = pki.other_ca_cert();
  o.tls.verify_peer = false;
  CHECK(unwrap(unwrap(RedisCoordinator::connect(o))->counter_add("ok", 1)) == 3);
}

TEST_CASE("a server that requires client certificates gets ours, or refuses clearly",
          "[redis][tls]") {
  auto server = start_tls_server({}, /*require_client_cert=*/true);
  const TestPki& pki = shared_test_pki();
  RedisOptions o = tls_options(server->tls_url(), quiet_log_sink());
  o.tls.ca_file = pki.ca_cert();

  // TLS 1.3: the refusal comes after the handshake, as an alert or as a
  // reset (our first command crossed it); either way the same answer.
  for (int attempt = 0; attempt < 20; ++attempt) {
    auto without = RedisCoordinator::connect(o);
    FLEET_REQUIRE_CODE(without, kUnauthenticated);
    CHECK(message_of(without.status()).find("cert_file") != std::string::npos);
  }

  o.tls.cert_file = pki.client_cert();
  o.tls.key_file = pki.client_key();
  auto c = unwrap(RedisCoordinator::connect(o));
  InstanceInfo me;
  me.id = "relay-1";
  FLEET_REQUIRE_OK(c->join(me));
  CHECK(unwrap(c->members()).size() == 1);

  // TLS 1.2: the refusal comes within the handshake.
  auto tls12 = start_tls_server({"--tls-protocols", "TLSv1.2"}, true);
  RedisOptions o12 = tls_options(tls12->tls_url(), quiet_log_sink());
  o12.tls.ca_file = pki.ca_cert();
  auto refused = RedisCoordinator::connect(o12);
  FLEET_REQUIRE_CODE(refused, kUnauthenticated);
  CHECK(message_of(refused.status()).find("requires a TLS client certificate") !=
        std::string::npos);
  o12.tls.cert_file = pki.client_cert();
  o12.tls.key_file = pki.client_key();
  CHECK(unwrap(unwrap(RedisCoordinator::connect(o12))->counter_add("n", 1)) == 1);
}

TEST_CASE("TLS files that cannot be used are InvalidArgument naming the option",
          "[redis][tls]") {
  const TestPki& pki = shared_test_pki();
  // No server is needed: the files are checked before connecting.
  RedisOptions o = tls_options("rediss://127.0.0.1:1/0", quiet_log_sink());

  o.tls.ca_file = pki.dir() + "/no-such-ca.pem";
  auto missing = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(missing, kInvalidArgument);
  CHECK(message_of(missing.status()).find("RedisTlsOptions::ca_file") !=
        std::string::npos);
  CHECK(message_of(missing.status()).find("no-such-ca.pem") != std::string::npos);

  const std::string not_pem = pki.dir() + "/not-a-cert.pem";
  std::ofstream(not_pem) << "this is not a certificate\n";
  o.tls.ca_file = not_pem;
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);
  ::unlink(not_pem.c_str());

  o.tls.ca_file = pki.ca_cert();
  o.tls.cert_file = pki.client_cert();
  auto half = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(half, kInvalidArgument);
  CHECK(message_of(half.status()).find("cert_file and key_file go together") !=
        std::string::npos);

  o.tls.key_file = pki.server_key();  // a key, but not the certificate's
  auto mismatched = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(mismatched, kInvalidArgument);
  CHECK(message_of(mismatched.status()).find("RedisTlsOptions::key_file") !=
        std::string::npos);

  o.tls.key_file = pki.dir() + "/no-such.key";
  FLEET_REQUIRE_CODE(RedisCoordinator::connect(o), kInvalidArgument);

  o.tls = RedisTlsOptions{};
  o.tls.ca_dir = pki.dir() + "/no-such-dir";
  auto no_dir = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(no_dir, kInvalidArgument);
  CHECK(message_of(no_dir.status()).find("RedisTlsOptions::ca_dir") != std::string::npos);
}

TEST_CASE("a password over TLS: AUTH works, wrong ones are Unauthenticated, never logged",
          "[redis][tls][auth]") {
  const std::string password = "Tls-Zq9-secret";
  auto server = start_tls_server({"--requirepass", password});
  const TestPki& pki = shared_test_pki();
  const std::string port = std::to_string(server->tls_port());
  CaptureSink sink;
  RedisOptions o =
      tls_options("rediss://:" + password + "@127.0.0.1:" + port + "/0", &sink);
  o.tls.ca_file = pki.ca_cert();
  CHECK(unwrap(unwrap(RedisCoordinator::connect(o))->counter_add("n", 1)) == 1);

  o.url = "rediss://:wrong-" + password + "@127.0.0.1:" + port + "/0";
  auto wrong = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(wrong, kUnauthenticated);
  o.url = "rediss://:" + password + "@127.0.0.1:" + port + "/0";
  o.tls.ca_file = pki.other_ca_cert();
  auto untrusted = RedisCoordinator::connect(o);
  FLEET_REQUIRE_CODE(untrusted, kUnauthenticated);
  for (const auto& st : {wrong.status(), untrusted.status()}) {
    INFO(st.message());
    CHECK(message_of(st).find("Zq9") == std::string::npos);
  }
  CHECK(message_of(untrusted.status()).find("rediss://:***@127.0.0.1") !=
        std::string::npos);
  for (const auto& line : sink.lines()) {
    INFO(line);
    CHECK(line.find("Zq9") == std::string::npos);
  }
}

TEST_CASE("a TLS handshake that gets no answer ends within the connect timeout",
          "[redis][tls][fault]") {
  auto server = start_tls_server();
  auto proxy = unwrap(FaultProxy::start(server->tls_port()));
  proxy->stall(true);  // TCP connects; the handshake's bytes go nowhere
  RedisOptions o = tls_options(
      "rediss://127.0.0.1:" + std::to_string(proxy->port()) + "/0", quiet_log_sink());
  o.tls.ca_file = shared_test_pki().ca_cert();
  const auto start = std::chrono::steady_clock::now();
  auto c = RedisCoordinator::connect(o);
  const auto took = std::chrono::steady_clock::now() - start;
  INFO(c.status().message());
  FLEET_REQUIRE_CODE(c, kUnavailable);
  CHECK(message_of(c.status()).find("timed out") != std::string::npos);
  CHECK(took < o.connect_timeout + std::chrono::seconds(1));
}

TEST_CASE("a TLS Redis that restarts empty: the session reconnects over TLS by itself",
          "[redis][tls][fault]") {
  auto server = start_tls_server();
  RedisOptions o = tls_options(server->tls_url(), quiet_log_sink());
  o.tls.ca_file = shared_test_pki().ca_cert();
  auto c = unwrap(RedisCoordinator::connect(o));
  InstanceInfo me;
  me.id = "survivor";
  FLEET_REQUIRE_OK(c->join(me));
  Recorder<ConnectionState> states;
  auto watch = unwrap(c->watch_connection(states.callback()));
  Recorder<Message> got;
  auto sub = unwrap(c->subscribe("news", got.callback()));
  REQUIRE(states.wait_count(1));

  server->kill();
  REQUIRE(server->restart().ok());
  REQUIRE(states.wait_for([](const std::vector<ConnectionState>& e) {
    return e.back() == ConnectionState::kReconnected;
  }));
  // Membership re-established, over a new TLS connection.
  auto members = unwrap(c->members());
  REQUIRE(members.size() == 1);
  CHECK(members[0].info.id == "survivor");
  CHECK(unwrap(server->command(
            {"HEXISTS", "fleet:{" + o.namespace_name + "}:members", "survivor"})) == "1");
  // The subscriber connection came back too.
  FLEET_REQUIRE_OK(c->publish("news", "after restart"));
  REQUIRE(got.wait_count(1));
  CHECK(got.events()[0].payload == "after restart");
}

TEST_CASE("fleetctl reads a fleet over rediss:// with --redis-tls-ca", "[redis][tls]") {
  auto server = start_tls_server();
  const TestPki& pki = shared_test_pki();
  RedisOptions o = tls_options(server->tls_url(), quiet_log_sink());
  o.tls.ca_file = pki.ca_cert();
  auto c = unwrap(RedisCoordinator::connect(o));
  FLEET_REQUIRE_OK(c->counter_add("requests", 7));

  Child ok = spawn(FLEETCTL_BINARY,
                   {"--redis-url", server->tls_url(), "--namespace", o.namespace_name,
                    "--redis-tls-ca", pki.ca_cert(), "counters"});
  int code = -1;
  const std::string out = finish(ok, &code, std::chrono::seconds(30));
  CHECK(code == 0);
  CHECK(out.find("requests") != std::string::npos);
  CHECK(out.find('7') != std::string::npos);

  // Without the CA the system's trust store does not know the test CA:
  // Unauthenticated, which fleetctl exits 1 for (64 is for bad arguments).
  Child refused = spawn(FLEETCTL_BINARY, {"--redis-url", server->tls_url(), "--namespace",
                                          o.namespace_name, "counters"});
  finish(refused, &code, std::chrono::seconds(30));
  CHECK(code == 1);
}

#endif  // FLEET_TEST_TLS_BUILD

}  // namespace
}  // namespace fleet::testing
