// A WebSocket client for the tests of fleet-room-server (Boost.Beast):
// its I/O thread collects every JSON message (arrays are split
// into their messages) for the test to wait on.
#ifndef FLEET_TESTS_SUPPORT_WS_CLIENT_HPP_
#define FLEET_TESTS_SUPPORT_WS_CLIENT_HPP_

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "nlohmann/json.hpp"

namespace fleet::testing {

class WsClient {
 public:
  // `address` is "ip:port". Throws (boost::system::system_error) if the
  // connection or handshake fails. One I/O thread per client runs its
  // reads and writes (a Beast stream is not for two threads at once).
  explicit WsClient(const std::string& address) : ws_(io_) {
    const auto colon = address.rfind(':');
    boost::asio::ip::tcp::endpoint at(
        boost::asio::ip::make_address(address.substr(0, colon)),
        static_cast<unsigned short>(std::stoi(address.substr(colon + 1))));
    ws_.next_layer().connect(at);
    ws_.handshake(address, "/ws");
    read();
    thread_ = std::thread([this] { io_.run(); });
  }
  ~WsClient() { drop(); }

  WsClient(const WsClient&) = delete;
  WsClient& operator=(const WsClient&) = delete;

  void send(const nlohmann::json& message) { send_text(message.dump()); }
  void send_text(const std::string& text) {
    auto owned = std::make_shared<std::string>(text);
    boost::asio::post(io_, [this, owned] {
      out_.push_back(owned);
      if (out_.size() == 1) write();
    });
  }

  // The first message received (ever) that satisfies `pred`, waiting up to
  // `limit` for it.
  std::optional<nlohmann::json> wait_for(
      const std::function<bool(const nlohmann::json&)>& pred,
      std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu_);
    std::optional<nlohmann::json> found;
    cv_.wait_for(lock, limit, [&] {
      for (const auto& m : received_)
        if (pred(m)) {
          found = m;
          return true;
        }
      return closed_;
    });
    if (!found) {
      for (const auto& m : received_)
        if (pred(m)) found = m;
    }
    return found;
  }
  std::optional<nlohmann::json> wait_type(const std::string& type,
                                          std::chrono::milliseconds limit) {
    return wait_for([&](const nlohmann::json& m) { return m.value("type", "") == type; },
                    limit);
  }

  std::vector<nlohmann::json> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  bool closed() {
    std::lock_guard<std::mutex> lock(mu_);
    return closed_;
  }

  // Cuts the TCP connection without a WebSocket close (a vanishing client).
  void drop() {
    if (!thread_.joinable()) return;
    boost::asio::post(io_, [this] {
      boost::system::error_code ec;
      ws_.next_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ec);
      ws_.next_layer().close(ec);
    });
    thread_.join();
  }

 private:
  void read() {
    ws_.async_read(in_, [this](boost::system::error_code ec, std::size_t) {
      if (ec) {
        std::lock_guard<std::mutex> lock(mu_);
        closed_ = true;
        cv_.notify_all();
        return;  // the I/O thread ends when nothing is pending
      }
      auto j = nlohmann::json::parse(boost::beast::buffers_to_string(in_.data()), nullptr,
                                     false);
      in_.consume(in_.size());
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (j.is_array()) {
          for (auto& m : j) received_.push_back(std::move(m));
        } else {
          received_.push_back(std::move(j));
        }
        cv_.notify_all();
      }
      read();
    });
  }
  void write() {
    ws_.text(true);
    ws_.async_write(boost::asio::buffer(*out_.front()),
                    [this](boost::system::error_code ec, std::size_t) {
                      if (ec) return;
                      out_.pop_front();
                      if (!out_.empty()) write();
                    });
  }

  boost::asio::io_context io_;
  boost::beast::websocket::stream<boost::asio::ip::tcp::socket> ws_;
  boost::beast::flat_buffer in_;
  std::deque<std::shared_ptr<std::string>> out_;  // I/O thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<nlohmann::json> received_;
  bool closed_ = false;
  std::thread thread_;
};

}  // namespace fleet::testing

#endif  // FLEET_TESTS_SUPPORT_WS_CLIENT_HPP_
