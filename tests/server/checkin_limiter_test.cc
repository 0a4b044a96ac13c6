// The check-in limiter on its own: peer keys, the per-peer task share, the
// token buckets refilling on the monotonic clock, and its bounded memory.
#include "checkin_limiter.h"

#include <gtest/gtest.h>

#include <string>

#include "clock.h"
#include "server_config.h"

namespace tinyfed::server {
namespace {

v1::CheckInLimits Limits() {
  v1::ServerConfig c;
  ApplyDefaults(&c);
  v1::CheckInLimits l = c.checkin_limits();
  l.set_exempt_loopback(false);
  return l;
}

TEST(CheckInLimiterTest, PeerKeyDropsThePortOnly) {
  EXPECT_EQ(PeerKey("ipv4:10.1.2.3:50123"), "ipv4:10.1.2.3");
  EXPECT_EQ(PeerKey("ipv6:[fe80::1]:50123"), "ipv6:[fe80::1]");
  EXPECT_EQ(PeerKey("unix:/run/tinyfed.sock"), "unix:/run/tinyfed.sock");
  // Two connections from one host are one peer.
  EXPECT_EQ(PeerKey("ipv4:10.1.2.3:1"), PeerKey("ipv4:10.1.2.3:2"));
  EXPECT_TRUE(IsLoopbackPeer("ipv4:127.0.0.1"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::1]"));
  EXPECT_TRUE(IsLoopbackPeer("ipv6:[::ffff:127.0.0.1]"));
  EXPECT_FALSE(IsLoopbackPeer("ipv4:10.127.0.1"));
  EXPECT_FALSE(IsLoopbackPeer("ipv6:[::2]"));
}

TEST(CheckInLimiterTest, APeerTakesAtMostItsShareOfTheSlots) {
  v1::CheckInLimits l = Limits();
  l.set_peer_task_share(0.25);
  // 13 slots (K = 10 x 1.3): ceil(3.25) = 4 per peer.
  CheckInLimiter limiter(l, 13);
  EXPECT_EQ(limiter.peer_task_cap(), 4u);
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(limiter.MayTakeTask("ipv4:10.0.0.1")) << i;
    limiter.TookTask("ipv4:10.0.0.1");
  }
  EXPECT_FALSE(limiter.MayTakeTask("ipv4:10.0.0.1"));
  EXPECT_TRUE(limiter.MayTakeTask("ipv4:10.0.0.2"));  // another peer is not affected
  limiter.ReleaseTask("ipv4:10.0.0.1");               // a task that could not be recorded
  EXPECT_TRUE(limiter.MayTakeTask("ipv4:10.0.0.1"));
  limiter.TookTask("ipv4:10.0.0.1");
  limiter.NewRound();
  EXPECT_TRUE(limiter.MayTakeTask("ipv4:10.0.0.1"));
  // A share that rounds to no slot still leaves one; 0.1 x 10 is exactly 1,
  // not the 2 a double product above 1 would give.
  l.set_peer_task_share(0.01);
  EXPECT_EQ(CheckInLimiter(l, 13).peer_task_cap(), 1u);
  l.set_peer_task_share(0.1);
  EXPECT_EQ(CheckInLimiter(l, 10).peer_task_cap(), 1u);
  l.set_peer_task_share(1);
  EXPECT_EQ(CheckInLimiter(l, 13).peer_task_cap(), 13u);
}

TEST(CheckInLimiterTest, LoopbackAndInProcessCallersAreExemptFromPeerLimits) {
  v1::CheckInLimits l = Limits();
  l.set_exempt_loopback(true);
  l.set_peer_task_share(0.05);  // one task of 13
  CheckInLimiter limiter(l, 13);
  for (int i = 0; i < 13; ++i) {
    ASSERT_TRUE(limiter.MayTakeTask("ipv4:127.0.0.1"));
    limiter.TookTask("ipv4:127.0.0.1");
    ASSERT_TRUE(limiter.MayTakeTask(""));
    limiter.TookTask("");
  }
  limiter.TookTask("ipv4:10.0.0.1");
  EXPECT_FALSE(limiter.MayTakeTask("ipv4:10.0.0.1"));
  l.set_exempt_loopback(false);
  CheckInLimiter strict(l, 13);
  strict.TookTask("ipv4:127.0.0.1");
  EXPECT_FALSE(strict.MayTakeTask("ipv4:127.0.0.1"));
}

TEST(CheckInLimiterTest, PeerBucketRefillsOnTheMonotonicClock) {
  v1::CheckInLimits l = Limits();
  l.set_peer_checkins_per_second(4);  // one check-in every 250 ms
  l.set_peer_burst(3);
  l.set_device_checkins_per_second(0);
  CheckInLimiter limiter(l, 13);
  FakeClock clock;
  const std::string peer = "ipv4:10.0.0.1";
  for (int i = 0; i < 3; ++i) {
    ASSERT_EQ(limiter.Admit(peer, "dev-" + std::to_string(i), clock.MonotonicMs()), 0u) << i;
  }
  // Empty: the next check-in is 250 ms away, whatever the device id.
  EXPECT_EQ(limiter.Admit(peer, "dev-9", clock.MonotonicMs()), 250u);
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.2", "dev-9", clock.MonotonicMs()), 0u);
  // A wall-clock step refills nothing.
  clock.StepWallMs(3'600'000);
  EXPECT_EQ(limiter.Admit(peer, "dev-9", clock.MonotonicMs()), 250u);
  clock.AdvanceMs(100);
  EXPECT_EQ(limiter.Admit(peer, "dev-9", clock.MonotonicMs()), 150u);
  clock.AdvanceMs(150);
  EXPECT_EQ(limiter.Admit(peer, "dev-9", clock.MonotonicMs()), 0u);
  EXPECT_EQ(limiter.Admit(peer, "dev-9", clock.MonotonicMs()), 250u);
  // A long pause refills to the burst, no further.
  clock.AdvanceMs(3'600'000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(limiter.Admit(peer, "d", clock.MonotonicMs()), 0u) << i;
  EXPECT_NE(limiter.Admit(peer, "d", clock.MonotonicMs()), 0u);
}

TEST(CheckInLimiterTest, DeviceBucketLimitsOneIdAcrossPeers) {
  v1::CheckInLimits l = Limits();
  l.set_peer_checkins_per_second(0);
  l.set_device_checkins_per_second(1);
  l.set_device_burst(2);
  CheckInLimiter limiter(l, 13);
  FakeClock clock;
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.1", "dev-1", clock.MonotonicMs()), 0u);
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.2", "dev-1", clock.MonotonicMs()), 0u);
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.3", "dev-1", clock.MonotonicMs()), 1000u);
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.3", "dev-2", clock.MonotonicMs()), 0u);
  clock.AdvanceMs(1000);
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.3", "dev-1", clock.MonotonicMs()), 0u);
}

TEST(CheckInLimiterTest, TrackedKeysStayBoundedAndIdleOnesMakeRoom) {
  v1::CheckInLimits l = Limits();
  l.set_peer_checkins_per_second(1);
  l.set_peer_burst(1);
  l.set_device_checkins_per_second(0);
  l.set_max_tracked(4);
  CheckInLimiter limiter(l, 13);
  FakeClock clock;
  for (int i = 0; i < 100; ++i) {
    limiter.Admit("ipv4:10.0.0." + std::to_string(i), "d", clock.MonotonicMs());
    ASSERT_LE(limiter.tracked_peers(), 4u) << i;
  }
  // The map is full of busy peers: a tracked one is still limited.
  EXPECT_EQ(limiter.Admit("ipv4:10.0.0.3", "d", clock.MonotonicMs()), 1000u);
  // Once their buckets have refilled they make room, and a new peer is
  // tracked and limited again.
  clock.AdvanceMs(1000);
  EXPECT_EQ(limiter.Admit("ipv4:10.9.9.9", "d", clock.MonotonicMs()), 0u);
  EXPECT_EQ(limiter.tracked_peers(), 1u);
  EXPECT_EQ(limiter.Admit("ipv4:10.9.9.9", "d", clock.MonotonicMs()), 1000u);
}

}  // namespace
}  // namespace tinyfed::server
