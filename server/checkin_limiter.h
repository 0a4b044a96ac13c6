// Check-in limits, so that one client cannot take a round's task slots
// (DESIGN.md "Trust": check-in rate per device and per peer).
//
// Three guards, from ServerConfig.checkin_limits:
// - Task share: a peer (one IP address, without the port: a host, a NAT or
//   a gateway) holds at most max(1, ceil(peer_task_share x task slots)) of
//   a round's tasks, so a client inventing device ids gets a few tasks and
//   the rest stay for other peers. The share is taken to the nearest
//   millionth first, as the over-selection factor is.
// - Peer rate: a token bucket per peer, peer_burst check-ins at once and
//   peer_checkins_per_second after that.
// - Device rate: the same per device id. Device ids are not authenticated
//   yet, so this guards against a device that loops, not against a forger
//   (who changes the id); with authenticated ids it becomes the main guard.
// A check-in a guard refuses is answered with a RetryAfter, as a full round
// is, so every device SDK backs off on its normal path.
//
// Peers on loopback (and unix sockets) are exempt from all three guards
// when exempt_loopback is set (the default): the simulator and a bridge on
// the server's host relay a whole fleet through one local address, and the
// simulator's devices check in every round, rounds coming faster than the
// device rate. The empty peer (an in-process caller) is always exempt.
//
// Memory: the share counts hold only peers that took a task in the open
// round (at most the round's task slots) and are cleared by NewRound(). Each
// bucket map holds at most max_tracked entries; a new key that finds its map
// full first removes every entry whose bucket has refilled (it remembers
// nothing a fresh entry would not), and when none has, the new key is not
// rate-limited until room appears: the rate guards degrade open under more
// than max_tracked active keys, the task share does not.
//
// Requires external synchronization (the RoundManager calls it under its
// lock). Times are the Clock's MonotonicMs().
#ifndef TINYFED_SERVER_CHECKIN_LIMITER_H_
#define TINYFED_SERVER_CHECKIN_LIMITER_H_

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/container/flat_hash_map.h"
#include "tinyfed/v1/server_config.pb.h"

namespace tinyfed::server {

// The peer key of a gRPC peer string: "ipv4:10.0.0.7:5501" -> "ipv4:10.0.0.7",
// "ipv6:[fe80::1]:5501" -> "ipv6:[fe80::1]"; other forms (unix sockets)
// stay whole.
std::string PeerKey(std::string_view grpc_peer);

// True for a peer key on loopback: ipv4 127.0.0.0/8, ipv6 [::1], an
// IPv4-mapped loopback address, or a unix socket.
bool IsLoopbackPeer(std::string_view peer_key);

class CheckInLimiter {
 public:
  // `limits` must have passed ValidateServerConfig(); `task_limit` is the
  // round's number of task slots.
  CheckInLimiter(const v1::CheckInLimits& limits, uint32_t task_limit);

  // Takes one check-in of `device` from `peer` (a PeerKey, "" for an
  // in-process caller) out of the buckets at `now_ms`. Returns 0 when
  // admitted; otherwise the milliseconds until the emptier bucket holds a
  // check-in again (>= 1), and nothing is taken.
  uint32_t Admit(std::string_view peer, std::string_view device, int64_t now_ms);

  // Whether `peer` may take one more task in the open round.
  bool MayTakeTask(std::string_view peer) const;
  // Counts a task handed to `peer`; ReleaseTask undoes it (the task could
  // not be recorded).
  void TookTask(std::string_view peer);
  void ReleaseTask(std::string_view peer);
  // A new round: every peer's task count back to zero.
  void NewRound() { tasks_by_peer_.clear(); }

  // max(1, ceil(peer_task_share x task_limit)).
  uint32_t peer_task_cap() const { return peer_task_cap_; }
  size_t tracked_peers() const { return peer_buckets_.size(); }
  size_t tracked_devices() const { return device_buckets_.size(); }

 private:
  struct Bucket {
    int64_t milli = 0;       // thousandths of a check-in
    int64_t updated_ms = 0;  // when `milli` was last brought up to date
  };
  struct Rate {
    int64_t per_second = 0;  // 0: no limit
    int64_t burst_milli = 0;
  };
  using Buckets = absl::flat_hash_map<std::string, Bucket>;

  bool LimitsPeer(std::string_view peer) const;
  // The bucket of `key` refilled to `now_ms`, or nullptr when the map is
  // full of busy keys (see the header).
  static Bucket* Refill(Buckets& buckets, const Rate& rate, size_t max_tracked,
                        std::string_view key, int64_t now_ms);
  static uint32_t WaitMs(const Bucket& bucket, const Rate& rate);

  const Rate peer_rate_;
  const Rate device_rate_;
  const bool exempt_loopback_;
  const size_t max_tracked_;
  const uint32_t peer_task_cap_;
  Buckets peer_buckets_;
  Buckets device_buckets_;
  absl::flat_hash_map<std::string, uint32_t> tasks_by_peer_;
};

}  // namespace tinyfed::server

#endif  // TINYFED_SERVER_CHECKIN_LIMITER_H_
