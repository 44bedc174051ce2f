// Requests across instances over pub/sub, for any module: ask every
// expected instance, wait on the Coordinator's Clock for their replies up
// to a timeout, report who did not answer. Each instance answers on the
// request channel "<prefix>/req"; replies come back on "<prefix>/resp/<id>".
//
// The handler runs on the Requests' own thread, one request at a time, in
// arrival order — never on the Coordinator's event thread and never on the
// module's callback thread, so a module callback that sends a request gets
// this instance's own answer too. A handler that itself sends a request
// gets its own instance's answer computed inline (on the same thread,
// nested), since that thread is busy with it.
//
// Wire formats (newline-separated header, then the bytes of the body):
//   request "rq1\n<id>\n<from instance>\n<topic>\n<body>"
//   reply   "rs1\n<id>\n<instance>\n<status code>\n<body or error message>"
#ifndef FLEET_SRC_MODULE_REQUESTS_HPP_
#define FLEET_SRC_MODULE_REQUESTS_HPP_

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "fleet/coordinator.hpp"
#include "fleet/module.hpp"
#include "internal/dispatcher.hpp"
#include "internal/logger.hpp"
#include "internal/mutex.hpp"

namespace fleet::internal {

class Requests {
 public:
  using Handler = std::function<absl::StatusOr<std::string>(std::string_view topic,
                                                            std::string_view body)>;

  // `prefix` names the channels (e.g. "rooms/chat"); `log` must outlive this.
  Requests(Coordinator& c, std::string prefix, const Logger& log, Handler handler);
  ~Requests();  // stop()
  Requests(const Requests&) = delete;
  Requests& operator=(const Requests&) = delete;

  // Starts answering as `me` and listening for replies to it.
  absl::Status attach(const std::string& me);
  // Unsubscribes and stops the handler thread; a request on its way gets
  // what came back so far.
  void stop();

  // Publishes the request and waits up to `timeout` for a reply from every
  // instance in `expected` (an instance that answers although not expected
  // counts too: it joined meanwhile). Errors: the publish's; otherwise OK or
  // DeadlineExceeded naming the missing instances.
  RequestResult ask(std::string_view topic, std::string_view body,
                    std::set<std::string> expected, std::chrono::milliseconds timeout);

  // Whether the calling thread is the handler thread.
  bool on_handler_thread() const { return handlers_.on_event_thread(); }

 private:
  struct Pending {
    std::set<std::string> expected;
    std::map<std::string, Reply> replies;
  };
  void on_request(const Message& m);
  void on_reply(const Message& m);
  // Runs the handler and returns the reply's wire form.
  std::string answer(std::string_view id, std::string_view topic, std::string_view body);
  void take_reply(std::string_view payload);

  Coordinator& c_;
  const std::string prefix_;
  const Logger& log_;
  const Handler handler_;
  Dispatcher handlers_;
  const std::shared_ptr<Dispatcher::Slot> slot_ = handlers_.new_slot();

  Mutex mu_;
  std::condition_variable cv_;
  std::string me_ ABSL_GUARDED_BY(mu_);
  std::uint64_t next_id_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::uint64_t, Pending> pending_ ABSL_GUARDED_BY(mu_);
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;
  // Ids of our own requests the handler thread answered inline.
  std::set<std::string> answered_inline_ ABSL_GUARDED_BY(mu_);
  Subscription requests_sub_, replies_sub_;  // attach() and stop() only
};

}  // namespace fleet::internal

#endif  // FLEET_SRC_MODULE_REQUESTS_HPP_
