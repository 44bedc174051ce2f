// Parsing of node specs, regions, policies and backend states (router.hpp),
// and the registry's record of a node.
#include "router/spec.hpp"

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include "fleet/names.hpp"
#include "fleet/router.hpp"
#include "fmt/format.h"
#include "internal/parse.hpp"
#include "internal/record.hpp"

namespace fleet::router {
namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
    s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    const auto pos = s.find(sep);
    out.push_back(trim(s.substr(0, pos)));
    if (pos == std::string_view::npos) break;
    s.remove_prefix(pos + 1);
  }
  return out;
}

bool parse_double(std::string_view s, double* out) {
  if (s.empty()) return false;
  const std::string copy(s);
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(copy.c_str(), &end);
  if (errno != 0 || end != copy.c_str() + copy.size() || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

absl::Status bad(std::string_view spec, std::string_view why) {
  return absl::InvalidArgumentError(fmt::format("node spec '{}': {}", spec, why));
}

absl::Status check_coordinates(const Region& r, std::string_view what) {
  if (r.latitude.has_value() != r.longitude.has_value()) {
    return absl::InvalidArgumentError(
        fmt::format("{}: give both lat and lon, or neither", what));
  }
  if (r.latitude && (std::abs(*r.latitude) > 90 || std::abs(*r.longitude) > 180)) {
    return absl::InvalidArgumentError(
        fmt::format("{}: lat must be in [-90, 90] and lon in [-180, 180]", what));
  }
  return absl::OkStatus();
}

// host:port with a non-empty host and a port in 1..65535.
bool valid_address(std::string_view a) {
  const auto colon = a.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  int port = 0;
  if (!internal::parse_port(a.substr(colon + 1), &port)) return false;
  for (char c : a.substr(0, colon)) {
    if (c == ' ' || c == '/' || c == ',' || static_cast<unsigned char>(c) < 0x21)
      return false;
  }
  return true;
}

}  // namespace

absl::StatusOr<NodeSpec> parse_node_spec(std::string_view spec) {
  const auto parts = split(trim(spec), ',');
  NodeSpec node;
  node.address = std::string(parts[0]);
  if (!valid_address(node.address)) {
    return bad(spec, "it must start with host:port (port 1-65535)");
  }
  node.id = node.address;
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    if (eq == std::string_view::npos) {
      return bad(spec, fmt::format("'{}' is not key=value", parts[i]));
    }
    const auto key = trim(parts[i].substr(0, eq));
    const auto value = trim(parts[i].substr(eq + 1));
    double d = 0;
    if (key == "id") {
      node.id = std::string(value);
    } else if (key == "region") {
      node.region.name = std::string(value);
    } else if (key == "lat" || key == "lon") {
      if (!parse_double(value, &d))
        return bad(spec, fmt::format("{} is not a number", key));
      (key == "lat" ? node.region.latitude : node.region.longitude) = d;
    } else if (key == "capacity") {
      if (!internal::parse_int(value, &node.capacity) || node.capacity < 1) {
        return bad(spec, "capacity must be a positive integer");
      }
    } else if (key == "labels") {
      for (auto label : split(value, '|')) {
        if (!label.empty()) node.labels.insert(std::string(label));
      }
    } else if (key == "state") {
      auto st = parse_backend_state(value);
      if (!st.ok()) return bad(spec, std::string(st.status().message()));
      node.state = *st;
    } else {
      return bad(spec, fmt::format("unknown key '{}' (id, region, lat, lon, capacity, "
                                   "labels, state)",
                                   key));
    }
  }
  if (auto st = validate_name("node id", node.id); !st.ok())
    return bad(spec, std::string(st.message()));
  if (node.id.size() > kMaxNodeIdBytes) {
    return bad(spec, fmt::format("node id is longer than {} bytes", kMaxNodeIdBytes));
  }
  if (auto st = check_coordinates(node.region, "node spec"); !st.ok()) {
    return bad(spec, std::string(st.message()));
  }
  return node;
}

absl::StatusOr<std::vector<NodeSpec>> parse_node_specs(std::string_view text) {
  std::vector<NodeSpec> out;
  int line_no = 0;
  for (auto line : split(text, '\n')) {
    ++line_no;
    if (line.empty() || line.front() == '#') continue;
    auto node = parse_node_spec(line);
    if (!node.ok()) {
      return absl::InvalidArgumentError(
          fmt::format("line {}: {}", line_no, std::string(node.status().message())));
    }
    out.push_back(std::move(*node));
  }
  return out;
}

absl::StatusOr<Region> parse_region(std::string_view text) {
  const auto parts = split(trim(text), ',');
  Region r;
  r.name = std::string(parts[0]);
  if (r.name.empty() || r.name.find('=') != std::string::npos) {
    return absl::InvalidArgumentError(
        fmt::format("region '{}': it must start with a name", text));
  }
  for (std::size_t i = 1; i < parts.size(); ++i) {
    const auto eq = parts[i].find('=');
    const auto key = eq == std::string_view::npos ? parts[i] : parts[i].substr(0, eq);
    double d = 0;
    if (eq == std::string_view::npos || (key != "lat" && key != "lon") ||
        !parse_double(parts[i].substr(eq + 1), &d)) {
      return absl::InvalidArgumentError(fmt::format(
          "region '{}': '{}' is not lat=<degrees> or lon=<degrees>", text, parts[i]));
    }
    (key == "lat" ? r.latitude : r.longitude) = d;
  }
  if (auto st = check_coordinates(r, fmt::format("region '{}'", text)); !st.ok())
    return st;
  return r;
}

absl::StatusOr<Policy> parse_policy(std::string_view name) {
  if (name == "least-inflight" || name == "least_inflight") return Policy::kLeastInflight;
  if (name == "weighted") return Policy::kWeighted;
  if (name == "region" || name == "region-aware") return Policy::kRegionAware;
  if (name == "p2c" || name == "power-of-two") return Policy::kPowerOfTwo;
  return absl::InvalidArgumentError(
      fmt::format("unknown policy '{}' (least-inflight, weighted, region, p2c)", name));
}

std::string_view to_string(Policy policy) {
  switch (policy) {
    case Policy::kLeastInflight:
      return "least-inflight";
    case Policy::kWeighted:
      return "weighted";
    case Policy::kRegionAware:
      return "region";
    case Policy::kPowerOfTwo:
      return "p2c";
  }
  return "?";
}

std::string_view to_string(BackendState state) {
  switch (state) {
    case BackendState::kServing:
      return "serving";
    case BackendState::kDraining:
      return "draining";
    case BackendState::kDown:
      return "down";
  }
  return "?";
}

absl::StatusOr<BackendState> parse_backend_state(std::string_view name) {
  if (name == "serving") return BackendState::kServing;
  if (name == "draining") return BackendState::kDraining;
  if (name == "down") return BackendState::kDown;
  return absl::InvalidArgumentError(
      fmt::format("unknown node state '{}' (serving, draining, down)", name));
}

namespace internal_router {

// The record's kind and version (before 0.2: a JSON object).
constexpr std::string_view kNodeMagic = "gn1";

std::string encode_spec(const NodeSpec& n) {
  internal::RecordWriter w(kNodeMagic);
  w.add(n.address).add(n.region.name).add(n.region.latitude.has_value());
  if (n.region.latitude) w.add(*n.region.latitude).add(*n.region.longitude);
  w.add(n.capacity).add(to_string(n.state)).add(n.labels.size());
  for (const auto& label : n.labels) w.add(label);
  return w.str();
}

std::optional<NodeSpec> decode_spec(const std::string& id, const std::string& text) {
  internal::RecordReader r(text, kNodeMagic);
  NodeSpec n;
  n.id = id;
  bool located = false;
  std::string_view state;
  std::size_t labels = 0;
  if (!r.next(&n.address) || !r.next(&n.region.name) || !r.next(&located)) {
    return std::nullopt;
  }
  if (located) {
    double lat = 0, lon = 0;
    if (!r.next(&lat) || !r.next(&lon)) return std::nullopt;
    n.region.latitude = lat;
    n.region.longitude = lon;
  }
  if (!r.next(&n.capacity) || n.capacity < 1 || !r.next(&state) || !r.next(&labels) ||
      labels > 1024) {
    return std::nullopt;
  }
  auto st = parse_backend_state(state);
  if (!st.ok()) return std::nullopt;
  n.state = *st;
  for (std::size_t i = 0; i < labels; ++i) {
    std::string label;
    if (!r.next(&label)) return std::nullopt;
    n.labels.insert(std::move(label));
  }
  if (!r.done()) return std::nullopt;
  return n;
}

}  // namespace internal_router

}  // namespace fleet::router
