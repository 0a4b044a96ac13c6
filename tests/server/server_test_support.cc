#include "server_test_support.h"

#include <gtest/gtest.h>
#include <sqlite3.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <stdexcept>

#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include "absl/strings/str_cat.h"

#include "tinyfed_common/crc32.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::server::testing {

absl::StatusOr<v1::CheckInResponse> CheckIn(RoundManager& m, const std::string& device_id) {
  v1::CheckInRequest request;
  request.set_device_id(device_id);
  std::promise<absl::StatusOr<v1::CheckInResponse>> promise;
  m.CheckIn(request, [&](absl::StatusOr<v1::CheckInResponse> r) { promise.set_value(std::move(r)); });
  return promise.get_future().get();
}

absl::StatusOr<v1::UpdateAck> Submit(RoundManager& m, const v1::Update& update) {
  std::promise<absl::StatusOr<v1::UpdateAck>> promise;
  m.SubmitUpdate(update, [&](absl::StatusOr<v1::UpdateAck> r) { promise.set_value(std::move(r)); });
  return promise.get_future().get();
}

void ExecSql(const std::string& path, const std::string& sql) {
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path.c_str(), &db), SQLITE_OK);
  char* error = nullptr;
  const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &error);
  EXPECT_EQ(rc, SQLITE_OK) << sql << ": " << (error ? error : "");
  sqlite3_free(error);
  sqlite3_close(db);
}

v1::HeadSpec MakeSpec(uint32_t features, uint32_t classes) {
  v1::HeadSpec spec;
  spec.set_feature_count(features);
  spec.set_class_count(classes);
  spec.set_weight_frac_bits(12);
  const auto scale = ToFixedScale(6.0 / 127.0);
  spec.mutable_feature_quantization()->set_scale_multiplier(scale->multiplier);
  spec.mutable_feature_quantization()->set_scale_shift(scale->shift);
  spec.mutable_feature_quantization()->set_zero_point(0);
  return spec;
}

Key256 TestFleetKey() {
  std::array<uint8_t, Key256::kSize> bytes;
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i);
  return Key256(bytes);
}

v1::SignedRequest SignBytes(const Key256& fleet_key, const std::string& device_id,
                            RequestType type, const std::string& body) {
  absl::StatusOr<Key256> device_key = DeriveDeviceKey(fleet_key, device_id);
  EXPECT_TRUE(device_key.ok()) << device_key.status();
  v1::SignedRequest signed_request;
  signed_request.set_device_id(device_id);
  signed_request.set_body(body);
  if (device_key.ok()) {
    const Tag256 tag = RequestTag(*device_key, type, body);
    signed_request.set_tag(std::string(tag.begin(), tag.end()));
  }
  return signed_request;
}

v1::SignedRequest Sign(const Key256& fleet_key, const v1::CheckInRequest& check_in) {
  return SignBytes(fleet_key, check_in.device_id(), RequestType::kCheckIn,
                   check_in.SerializeAsString());
}

v1::SignedRequest Sign(const Key256& fleet_key, const v1::Update& update) {
  return SignBytes(fleet_key, update.device_id(), RequestType::kUpdate,
                   update.SerializeAsString());
}

void FixChecksum(v1::Update* update) {
  uint32_t crc = tinyfed_crc32_update(
      TINYFED_CRC32_INIT, reinterpret_cast<const uint8_t*>(update->weight_delta().data()),
      update->weight_delta().size());
  crc = tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(update->bias_delta().data()),
                             update->bias_delta().size());
  update->set_checksum(crc);
}

v1::Update MakeUpdate(const v1::HeadSpec& spec, uint32_t round, const std::string& device_id,
                      const std::string& token, uint32_t base_version, uint32_t sample_count,
                      std::mt19937& rng, uint32_t max_scale) {
  std::uniform_int_distribution<int> value(-127, 127);
  std::uniform_int_distribution<uint32_t> scale(1, max_scale);
  v1::Update u;
  u.set_round(round);
  u.set_task_token(token);
  u.set_device_id(device_id);
  u.set_base_version(base_version);
  u.set_sample_count(sample_count);
  std::string w(static_cast<size_t>(spec.feature_count()) * spec.class_count(), '\0');
  for (char& ch : w) ch = static_cast<char>(static_cast<int8_t>(value(rng)));
  std::string b(spec.class_count(), '\0');
  for (char& ch : b) ch = static_cast<char>(static_cast<int8_t>(value(rng)));
  u.set_weight_delta(w);
  u.set_bias_delta(b);
  for (uint32_t c = 0; c < spec.class_count(); ++c) u.add_row_scales(scale(rng));
  u.set_local_loss_q16(std::uniform_int_distribution<uint32_t>(0, 200000)(rng));
  FixChecksum(&u);
  return u;
}

TempDir::TempDir() {
  std::string templ = (std::filesystem::temp_directory_path() / "tinyfed-test-XXXXXX").string();
  if (mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp failed");
  path_ = templ;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string HealthStatus(const std::string& address, const std::string& service) {
  grpc::GenericStub stub(grpc::CreateChannel(address, grpc::InsecureChannelCredentials()));
  std::string request_bytes;
  if (!service.empty()) {
    request_bytes = std::string("\x0a", 1) + static_cast<char>(service.size()) + service;
  }
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  grpc::Slice slice(request_bytes);
  grpc::ByteBuffer request(&slice, 1), reply;
  std::promise<grpc::Status> done;
  stub.UnaryCall(&context, "/grpc.health.v1.Health/Check", grpc::StubOptions(), &request, &reply,
                 [&](grpc::Status s) { done.set_value(std::move(s)); });
  const grpc::Status status = done.get_future().get();
  if (!status.ok()) return absl::StrCat("error ", status.error_code());
  grpc::Slice all;
  if (!reply.DumpToSingleSlice(&all).ok()) return "unreadable";
  const std::string bytes(reinterpret_cast<const char*>(all.begin()), all.size());
  if (bytes == std::string("\x08\x01", 2)) return "SERVING";
  if (bytes == std::string("\x08\x02", 2)) return "NOT_SERVING";
  return "unexpected answer";
}

int64_t UpdateRowCrc(int64_t round, const std::string& device, const std::string& payload,
                     int64_t received_ms) {
  const auto put = [](uint8_t kind, uint64_t v, uint32_t crc) {
    uint8_t bytes[9] = {kind};
    for (int i = 0; i < 8; ++i) bytes[1 + i] = static_cast<uint8_t>(v >> (8 * i));
    return Crc32Update(crc, bytes, sizeof bytes);
  };
  const char tag = 'u';
  uint32_t crc = Crc32Update(0, &tag, 1);
  crc = put(1, static_cast<uint64_t>(round), crc);
  crc = put(2, device.size(), crc);
  crc = Crc32Update(crc, device.data(), device.size());
  crc = put(2, payload.size(), crc);
  crc = Crc32Update(crc, payload.data(), payload.size());
  crc = put(1, static_cast<uint64_t>(received_ms), crc);
  return crc;
}

}  // namespace tinyfed::server::testing
