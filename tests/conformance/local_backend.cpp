// The conformance suite on LocalCoordinator, time driven by a ManualClock.
#include "backend.hpp"
#include "fleet/local_coordinator.hpp"

namespace fleet::testing {
namespace {

class LocalBackend final : public Backend {
 public:
  LocalBackend() {
    LocalOptions options;
    options.clock = &clock_;
    options.session_ttl = std::chrono::milliseconds(300);
    options.log_sink = quiet_log_sink();
    store_ = LocalStore::create(options).value();
  }
  std::unique_ptr<Coordinator> connect() override {
    return LocalCoordinator::connect(store_).value();
  }
  void advance(std::chrono::milliseconds d) override { clock_.advance(d); }
  std::chrono::milliseconds session_ttl() const override {
    return std::chrono::milliseconds(300);
  }
  std::chrono::milliseconds lease_ttl() const override {
    return std::chrono::milliseconds(300);
  }
  std::unique_ptr<Coordinator> connect_cuttable() override { return connect(); }
  void cut(Coordinator& c) override {
    if (!store_->set_reachable(c.session_id(), false).ok()) std::abort();
  }
  void heal(Coordinator& c) override {
    if (!store_->set_reachable(c.session_id(), true).ok()) std::abort();
  }
  void lose_data() override { store_->lose_data(); }

 private:
  ManualClock clock_;  // declared first: outlives the store
  std::shared_ptr<LocalStore> store_;
};

}  // namespace

std::unique_ptr<Backend> make_backend() { return std::make_unique<LocalBackend>(); }

}  // namespace fleet::testing
