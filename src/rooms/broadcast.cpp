#include "rooms/broadcast.hpp"

#include <random>

#include "fmt/format.h"
#include "internal/status.hpp"
#include "rooms/internal.hpp"

namespace fleet::rooms::internal_rooms {

using internal::MutexLock;

namespace {
std::string random_incarnation() {
  std::random_device rd;
  return std::to_string(rd() ^ (static_cast<std::uint64_t>(rd()) << 32));
}
}  // namespace

Broadcasts::Broadcasts(Context& ctx, LocalRooms& local)
    : ctx_(ctx), local_(local), incarnation_(random_incarnation()) {}

absl::StatusOr<Subscription> Broadcasts::subscribe(const std::string& room) {
  return ctx_.c.subscribe(broadcast_channel(ctx_.o.name, room),
                          [this, room](const Message& m) { on_message(room, m); });
}

absl::Status Broadcasts::send(const std::string& room, std::string_view payload,
                              const BroadcastOptions& options) {
  MutexLock send_lock(send_mu_);
  std::uint64_t seq;
  {
    MutexLock lock(mu_);
    seq = ++sent_[room];
  }
  FLEET_RETURN_IF_ERROR(
      ctx_.c.publish(broadcast_channel(ctx_.o.name, room),
                     encode_broadcast(ctx_.me, incarnation_, seq, options, payload)));
  {
    MutexLock lock(mu_);
    ++sent_count_;
  }
  auto recipients = local_.recipients(room, options.except);
  if (!recipients || recipients->empty()) return absl::OkStatus();
  Delivery d;
  d.room = room;
  d.sender = ctx_.me;
  d.from = options.from;
  d.sequence = seq;
  d.payload = std::string(payload);
  d.recipients = std::move(*recipients);
  // Still under send_mu_: the callback queue gets them in sequence order.
  ctx_.post(ctx_.o.on_message, std::move(d));
  return absl::OkStatus();
}

void Broadcasts::on_message(const std::string& room, const Message& m) {
  Broadcast b;
  if (!decode_broadcast(m.payload, &b)) {
    ctx_.log().warn("skipping a malformed broadcast on room '{}'", room);
    return;
  }
  if (b.sender == ctx_.me && b.incarnation == incarnation_) return;  // ours
  std::optional<Gap> gap;
  {
    MutexLock lock(mu_);
    ++received_count_;
    auto& last = received_[room][fmt::format("{}/{}", b.sender, b.incarnation)];
    if (last != 0 && b.sequence > last + 1) {
      gap = Gap{room, std::string(b.sender), b.sequence - last - 1,
                fmt::format("sequence jumped from {} to {}", last, b.sequence)};
      ++gaps_;
    } else if (last != 0 && b.sequence <= last) {
      ctx_.log().warn("room '{}': broadcast {} from '{}' arrived after {}; delivering it",
                      room, b.sequence, b.sender, last);
    }
    last = std::max(last, b.sequence);
  }
  if (gap) {
    ctx_.log().warn("room '{}': missed {} broadcast(s) from '{}' ({})", room, gap->missed,
                    gap->sender, gap->reason);
    ctx_.post(ctx_.o.on_gap, std::move(*gap));
  }
  auto recipients = local_.recipients(room, b.except);
  if (!recipients || recipients->empty()) return;
  Delivery d;
  d.room = room;
  d.sender = std::string(b.sender);
  d.from = std::string(b.from);
  d.sequence = b.sequence;
  d.payload = std::string(b.payload);
  d.recipients = std::move(*recipients);
  ctx_.post(ctx_.o.on_message, std::move(d));
}

void Broadcasts::interrupted(const std::vector<std::string>& rooms) {
  {
    MutexLock lock(mu_);
    for (const auto& room : rooms) {
      received_.erase(room);
      ++gaps_;
    }
  }
  for (const auto& room : rooms) {
    ctx_.post(ctx_.o.on_gap,
              Gap{room, "", 0,
                  "the connection to the backend was interrupted: broadcasts sent "
                  "meanwhile were missed"});
  }
}

void Broadcasts::forget(const std::string& room) {
  MutexLock lock(mu_);
  received_.erase(room);
}

void Broadcasts::fill(RoomsStats* stats) const {
  MutexLock lock(mu_);
  stats->broadcasts_sent = sent_count_;
  stats->broadcasts_received = received_count_;
  stats->gaps = gaps_;
}

}  // namespace fleet::rooms::internal_rooms
