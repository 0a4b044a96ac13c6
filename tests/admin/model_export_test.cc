// `tinyfed-admin export`: the C header compiled by the system's C compiler
// as a firmware build would, with a C program printing what it holds,
// compared with the ModelVersion's bytes decoded here; the JSON and binary
// forms read back to the same message; a damaged version is never exported.
#include "model_export.h"

#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "tinyfed_common/crc32.h"

namespace tinyfed::admin {
namespace {

// int16 little-endian, decoded without the export code: the value of the
// two bytes as an unsigned number, less 2^16 when the sign bit is set.
std::vector<long> DecodeInt16(const std::string& bytes) {
  std::vector<long> values;
  for (size_t i = 0; i + 1 < bytes.size(); i += 2) {
    long v = static_cast<unsigned char>(bytes[i]) + 256L * static_cast<unsigned char>(bytes[i + 1]);
    if (v >= 32768) v -= 65536;
    values.push_back(v);
  }
  return values;
}

std::string EncodeInt16(const std::vector<int>& values) {
  std::string bytes;
  for (int v : values) {
    const unsigned u = static_cast<unsigned>(v) & 0xffffu;
    bytes.push_back(static_cast<char>(u & 0xff));
    bytes.push_back(static_cast<char>(u >> 8));
  }
  return bytes;
}

uint32_t Crc(const std::string& a, const std::string& b) {
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT,
                                      reinterpret_cast<const uint8_t*>(a.data()), a.size());
  return tinyfed_crc32_update(crc, reinterpret_cast<const uint8_t*>(b.data()), b.size());
}

// A version of `classes` x `features` with random weights and the int16
// extremes in the first places, where a sign or width mistake shows.
v1::ModelVersion MakeModel(uint32_t classes, uint32_t features, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> any(-32768, 32767);
  std::vector<int> w(size_t{classes} * features), b(classes);
  for (int& v : w) v = any(rng);
  for (int& v : b) v = any(rng);
  w[0] = -32768;
  w[1] = 32767;
  w[2] = -1;
  w[3] = 0;
  b[0] = -32768;
  b[1] = 32767;
  v1::ModelVersion model;
  model.set_version(7);
  model.set_parent_version(6);
  model.set_round(6);
  v1::HeadSpec* spec = model.mutable_spec();
  spec->set_class_count(classes);
  spec->set_feature_count(features);
  spec->set_weight_frac_bits(11);
  spec->mutable_feature_quantization()->set_scale_multiplier(2147483647);
  spec->mutable_feature_quantization()->set_scale_shift(-31);
  spec->mutable_feature_quantization()->set_zero_point(-128);
  model.set_weights(EncodeInt16(w));
  model.set_bias(EncodeInt16(b));
  model.set_checksum(Crc(model.weights(), model.bias()));
  model.mutable_metrics()->set_participants(5);
  model.set_created_unix_ms(1714566896000);
  return model;
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

class ExportCTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/tinyfed_export_c_XXXXXX";
    ASSERT_NE(mkdtemp(pattern), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::system(("rm -rf '" + dir_ + "'").c_str()); }

  // Writes the header, compiles `program` with it as a firmware build
  // would (C99, pedantic, warnings as errors, the SDK's headers on the
  // path) and returns what it prints; fails the test when it does not
  // compile or run.
  std::string CompileAndRun(const std::string& header, const std::string& program) {
    std::ofstream(dir_ + "/tinyfed_model.h") << header;
    std::ofstream(dir_ + "/main.c") << program;
    const std::string compile =
        absl::StrCat("'", TINYFED_C_COMPILER, "' -std=c99 -pedantic -Wall -Wextra -Werror ",
                     "-Wconversion -I'", dir_, "' -I'", TINYFED_SDK_INCLUDE_DIR, "' -I'",
                     TINYFED_COMMON_INCLUDE_DIR, "' -o '", dir_, "/main' '", dir_,
                     "/main.c' > '", dir_, "/cc.log' 2>&1");
    const int compiled = std::system(compile.c_str());
    EXPECT_EQ(compiled, 0) << ReadAll(dir_ + "/cc.log");
    if (compiled != 0) return "";
    const int ran = std::system(absl::StrCat("'", dir_, "/main' > '", dir_, "/out'").c_str());
    EXPECT_TRUE(WIFEXITED(ran) && WEXITSTATUS(ran) == 0) << ran;
    return ReadAll(dir_ + "/out");
  }

  std::string dir_;
};

// Prints every macro and array of the header, one value a line, and checks
// that the SDK's view made by TINYFED_MODEL_HEAD_VIEW_INIT sees the same
// arrays and shape.
constexpr char kPrintProgram[] = R"C(#include <stdio.h>
#include "tinyfed/tinyfed.h"
#include "tinyfed_model.h"
#include "tinyfed_model.h" /* the include guard makes a second include harmless */

int main(void) {
  static const tinyfed_head_view_t view = TINYFED_MODEL_HEAD_VIEW_INIT;
  unsigned long i;
  printf("%lu %lu %lu %lu\n", (unsigned long)TINYFED_MODEL_VERSION,
         (unsigned long)TINYFED_MODEL_CLASS_COUNT, (unsigned long)TINYFED_MODEL_FEATURE_COUNT,
         (unsigned long)TINYFED_MODEL_WEIGHT_FRAC_BITS);
  printf("%ld %ld %ld %lu\n", (long)TINYFED_MODEL_FEATURE_SCALE_MULTIPLIER,
         (long)TINYFED_MODEL_FEATURE_SCALE_SHIFT, (long)TINYFED_MODEL_FEATURE_ZERO_POINT,
         (unsigned long)TINYFED_MODEL_CHECKSUM);
  if (sizeof tinyfed_model_weights / sizeof tinyfed_model_weights[0] !=
      TINYFED_MODEL_CLASS_COUNT * TINYFED_MODEL_FEATURE_COUNT) return 2;
  if (sizeof tinyfed_model_bias / sizeof tinyfed_model_bias[0] != TINYFED_MODEL_CLASS_COUNT)
    return 3;
  if (view.weights != tinyfed_model_weights || view.bias != tinyfed_model_bias ||
      view.class_count != TINYFED_MODEL_CLASS_COUNT ||
      view.feature_count != TINYFED_MODEL_FEATURE_COUNT ||
      view.weight_frac_bits != TINYFED_MODEL_WEIGHT_FRAC_BITS) return 4;
  for (i = 0; i < sizeof tinyfed_model_weights / sizeof tinyfed_model_weights[0]; ++i)
    printf("w %d\n", tinyfed_model_weights[i]);
  for (i = 0; i < sizeof tinyfed_model_bias / sizeof tinyfed_model_bias[0]; ++i)
    printf("b %d\n", tinyfed_model_bias[i]);
  return 0;
}
)C";

void ExpectHeaderHoldsModel(const v1::ModelVersion& model, const std::string& printed) {
  const std::vector<std::string> lines = absl::StrSplit(printed, '\n', absl::SkipEmpty());
  const uint32_t classes = model.spec().class_count();
  const uint32_t features = model.spec().feature_count();
  ASSERT_EQ(lines.size(), 2 + size_t{classes} * features + classes) << printed.substr(0, 400);
  EXPECT_EQ(lines[0], absl::StrCat(model.version(), " ", classes, " ", features, " ",
                                   model.spec().weight_frac_bits()));
  const v1::FeatureQuantization& q = model.spec().feature_quantization();
  EXPECT_EQ(lines[1], absl::StrCat(q.scale_multiplier(), " ", q.scale_shift(), " ",
                                   q.zero_point(), " ", model.checksum()));
  const std::vector<long> w = DecodeInt16(model.weights());
  const std::vector<long> b = DecodeInt16(model.bias());
  for (size_t i = 0; i < w.size(); ++i) {
    ASSERT_EQ(lines[2 + i], absl::StrCat("w ", w[i])) << "weight " << i;
  }
  for (size_t i = 0; i < b.size(); ++i) {
    ASSERT_EQ(lines[2 + w.size() + i], absl::StrCat("b ", b[i])) << "bias " << i;
  }
}

TEST_F(ExportCTest, HeaderCompilesAsC99AndHoldsTheVersionsValues) {
  const v1::ModelVersion model = MakeModel(3, 5, 1);
  absl::StatusOr<std::string> header = ExportModel(model, ExportFormat::kC);
  ASSERT_TRUE(header.ok()) << header.status();
  ExpectHeaderHoldsModel(model, CompileAndRun(*header, kPrintProgram));
}

TEST_F(ExportCTest, TheDefaultHeadShapeAndOtherFormatsToo) {
  v1::ModelVersion model = MakeModel(10, 64, 2);
  model.mutable_spec()->set_weight_frac_bits(12);
  model.mutable_spec()->mutable_feature_quantization()->set_scale_multiplier(1623294206);
  model.mutable_spec()->mutable_feature_quantization()->set_scale_shift(-4);
  model.mutable_spec()->mutable_feature_quantization()->set_zero_point(127);
  absl::StatusOr<std::string> header = ExportModelAsC(model);
  ASSERT_TRUE(header.ok()) << header.status();
  ExpectHeaderHoldsModel(model, CompileAndRun(*header, kPrintProgram));
}

TEST(ExportTest, JsonReadsBackToTheSameMessage) {
  const v1::ModelVersion model = MakeModel(4, 6, 3);
  absl::StatusOr<std::string> json = ExportModel(model, ExportFormat::kJson);
  ASSERT_TRUE(json.ok()) << json.status();
  v1::ModelVersion back;
  const auto parsed = google::protobuf::util::JsonStringToMessage(*json, &back);
  ASSERT_TRUE(parsed.ok()) << parsed.ToString();
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, model))
      << back.DebugString();
  // Defaults are printed, so a script finds every field.
  EXPECT_NE(json->find("\"restored_from\": 0"), std::string::npos) << *json;
}

TEST(ExportTest, ProtoIsTheMessagesBinaryForm) {
  const v1::ModelVersion model = MakeModel(2, 3, 4);
  absl::StatusOr<std::string> bytes = ExportModel(model, ExportFormat::kProto);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  v1::ModelVersion back;
  ASSERT_TRUE(back.ParseFromString(*bytes));
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(back, model));
}

TEST(ExportTest, ADamagedVersionIsNotExported) {
  const v1::ModelVersion good = MakeModel(3, 5, 5);
  v1::ModelVersion flipped = good;
  (*flipped.mutable_weights())[7] ^= 0x10;
  v1::ModelVersion short_bias = good;
  short_bias.mutable_bias()->pop_back();
  short_bias.set_checksum(Crc(short_bias.weights(), short_bias.bias()));
  v1::ModelVersion bad_format = good;
  bad_format.mutable_spec()->set_weight_frac_bits(15);
  for (const auto& [model, what] :
       {std::pair{flipped, "checksum 0x"}, std::pair{short_bias, "5 bytes of bias, expected 6"},
        std::pair{bad_format, "weight_frac_bits 15"}}) {
    for (ExportFormat format : {ExportFormat::kProto, ExportFormat::kJson, ExportFormat::kC}) {
      absl::StatusOr<std::string> out = ExportModel(model, format);
      ASSERT_FALSE(out.ok()) << what;
      EXPECT_EQ(out.status().code(), absl::StatusCode::kDataLoss);
      EXPECT_NE(out.status().message().find(what), absl::string_view::npos) << out.status();
    }
  }
}

TEST(ExportTest, FormatNames) {
  EXPECT_EQ(*ParseExportFormat("proto"), ExportFormat::kProto);
  EXPECT_EQ(*ParseExportFormat("json"), ExportFormat::kJson);
  EXPECT_EQ(*ParseExportFormat("c"), ExportFormat::kC);
  EXPECT_EQ(ParseExportFormat("C").status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tinyfed::admin
