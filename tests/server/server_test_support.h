// Fixtures for server tests: valid updates with random int8 deltas, blocking
// calls into a RoundManager, SQL on a store's file, and a temporary
// directory per test.
#ifndef TINYFED_TESTS_SERVER_SERVER_TEST_SUPPORT_H_
#define TINYFED_TESTS_SERVER_SERVER_TEST_SUPPORT_H_

#include <cstdint>
#include <random>
#include <string>

#include "absl/status/statusor.h"
#include "round_manager.h"
#include "tinyfed_common/fleet_keys.h"
#include "tinyfed/v1/coordinator.pb.h"
#include "tinyfed/v1/model.pb.h"
#include "tinyfed/v1/round.pb.h"

namespace tinyfed::server::testing {

// A spec of `features` x `classes` with the default formats (scale 6/127,
// zero point 0, 12 fraction bits).
v1::HeadSpec MakeSpec(uint32_t features = 64, uint32_t classes = 10);

// A valid update for a head of spec's shape: int8 values uniform in
// [-127, 127], row scales uniform in [1, max_scale], the given sample
// count, and a correct checksum.
v1::Update MakeUpdate(const v1::HeadSpec& spec, uint32_t round, const std::string& device_id,
                      const std::string& token, uint32_t base_version, uint32_t sample_count,
                      std::mt19937& rng, uint32_t max_scale = 517);

// A check-in and an update submission that wait for the manager's answer.
absl::StatusOr<v1::CheckInResponse> CheckIn(RoundManager& m, const std::string& device_id);
absl::StatusOr<v1::UpdateAck> Submit(RoundManager& m, const v1::Update& update);

// The fleet key tests use unless they need another: bytes 0x00..0x1f,
// device_key.h's vector key.
Key256 TestFleetKey();

// `body` (a message's exact bytes) in a SignedRequest for `device_id`,
// tagged with that device's key under `fleet_key` (request_auth.h).
v1::SignedRequest SignBytes(const Key256& fleet_key, const std::string& device_id,
                            RequestType type, const std::string& body);
// The message serialized and signed for its own device id.
v1::SignedRequest Sign(const Key256& fleet_key, const v1::CheckInRequest& check_in);
v1::SignedRequest Sign(const Key256& fleet_key, const v1::Update& update);

// Recomputes update->checksum after a test edits its deltas.
void FixChecksum(v1::Update* update);

// What grpc.health.v1 Check answers for `service` ("" for the whole
// server) at `address`: "SERVING", "NOT_SERVING", "error CODE" for a
// failed call, or "unexpected answer". The request and the answer are
// encoded by hand (HealthCheckRequest {service = 1}; the answer's status
// field: SERVING = 1, NOT_SERVING = 2), so that the check does not rely
// on the server's own health code.
std::string HealthStatus(const std::string& address, const std::string& service);

// Runs SQL on a store's file from a connection of its own, as an
// operator's tool would (to inspect it, or to inject a failure with a
// trigger); a failure fails the test.
void ExecSql(const std::string& path, const std::string& sql);

// The store's row CRC of an update row, written from its documented layout
// (model_store_sqlite.cc RowCrc: the tag 'u', then each value with its
// kind, integers as 8 bytes little-endian, bytes as their 8-byte length and
// the bytes), not by the store's code, so that a test can alter a row the
// way someone with the file and the source could.
int64_t UpdateRowCrc(int64_t round, const std::string& device, const std::string& payload,
                     int64_t received_ms);

// A fresh empty directory under the system's temporary directory, removed
// with its contents when the object goes away.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace tinyfed::server::testing

#endif  // TINYFED_TESTS_SERVER_SERVER_TEST_SUPPORT_H_
