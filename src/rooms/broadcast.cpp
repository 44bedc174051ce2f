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
  const absl::Status published =
      ctx_.c.publish(broadcast_channel(ctx_.o.name, room),
                     encode_broadcast(ctx_.me, incarnation_, seq, options, payload));
  if (published.ok()) {
    MutexLock lock(mu_);
    ++sent_count_;
  }
  // This instance's members get it whether or not the backend took it: an
  // outage must not silence a room for the members beside the sender. The
  // other instances see the sequence number this one used and skipped, and
  // report it as a gap of exactly those broadcasts.
  auto recipients = local_.recipients(room, options.except);
  if (recipients && !recipients->empty()) {
    Delivery d;
    d.room = room;
    d.sender = ctx_.me;
    d.from = options.from;
    d.sequence = seq;
    d.payload = std::string(payload);
    d.recipients = std::move(*recipients);
    // Still under send_mu_: the callback queue gets them in sequence order.
    ctx_.post(ctx_.o.on_message, std::move(d));
  }
  if (published.ok()) return absl::OkStatus();
  {
    MutexLock lock(mu_);
    ++local_only_;
  }
  absl::Status st(
      published.code(),
      fmt::format("broadcast {} to room '{}' reached this instance's members only: {}",
                  seq, room, std::string(published.message())));
  st.SetPayload(kLocalOnlyPayload, absl::Cord("1"));
  return st;
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
  stats->broadcasts_local_only = local_only_;
  stats->broadcasts_received = received_count_;
  stats->gaps = gaps_;
}

}  // namespace fleet::rooms::internal_rooms
