// Context set-up: arena sizing, argument checks, call order.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "sdk_test_support.h"

namespace tinyfed::testing {
namespace {

TEST(ArenaSize, FunctionMatchesMacroForValidCapacities) {
  EXPECT_EQ(tinyfed_arena_size(64, 10, 16), TINYFED_ARENA_SIZE(64, 10, 16));
  EXPECT_EQ(tinyfed_arena_size(128, 32, 64), TINYFED_ARENA_SIZE(128, 32, 64));
  EXPECT_EQ(tinyfed_arena_size(1, 2, 1), TINYFED_ARENA_SIZE(1, 2, 1));
}

TEST(ArenaSize, RejectsCapacitiesOutsideProtocolBounds) {
  EXPECT_EQ(tinyfed_arena_size(0, 10, 8), 0u);
  EXPECT_EQ(tinyfed_arena_size(64, 1, 8), 0u);
  EXPECT_EQ(tinyfed_arena_size(64, 33, 8), 0u);
  EXPECT_EQ(tinyfed_arena_size(64, 10, 0), 0u);
  EXPECT_EQ(tinyfed_arena_size(64, 10, 65), 0u);
  EXPECT_EQ(tinyfed_arena_size(129, 32, 8), 0u);  // 4128 weights > 4096
}

TEST(ArenaSize, SmallHeadFitsSmallRam) {
  // A 64x10 head with batches of 16 must leave room in 8 KB of device RAM
  // for buffers and stack: the arena alone stays under 5 KB.
  EXPECT_LT(TINYFED_ARENA_SIZE(64, 10, 16), 5u * 1024u);
}

TEST(Init, AcceptsUnalignedArenaOfExactSize) {
  const size_t size = tinyfed_arena_size(64, 10, 16);
  std::vector<uint8_t> storage(size + 1);
  tinyfed_context_t ctx;
  const Key256 key = TestDeviceKey("dev-1");
  tinyfed_config_t cfg{"dev-1", 64, 10, 16, key.bytes().data()};
  EXPECT_EQ(tinyfed_init(&ctx, &cfg, storage.data() + 1, size), TINYFED_OK);
}

TEST(Init, RejectsBadArguments) {
  std::vector<uint8_t> arena(tinyfed_arena_size(64, 10, 16));
  tinyfed_context_t ctx;
  const Key256 device_key = TestDeviceKey("dev-1");
  const uint8_t* key = device_key.bytes().data();
  tinyfed_config_t cfg{"dev-1", 64, 10, 16, key};
  EXPECT_EQ(tinyfed_init(nullptr, &cfg, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_init(&ctx, nullptr, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_init(&ctx, &cfg, nullptr, arena.size()), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_init(&ctx, &cfg, arena.data(), arena.size() - 1),
            TINYFED_ERR_BUFFER_TOO_SMALL);
  EXPECT_STRNE(tinyfed_last_error_message(&ctx), "");

  tinyfed_config_t empty_id{"", 64, 10, 16, key};
  EXPECT_EQ(tinyfed_init(&ctx, &empty_id, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  const std::string long_id(33, 'x');
  tinyfed_config_t long_cfg{long_id.c_str(), 64, 10, 16, key};
  EXPECT_EQ(tinyfed_init(&ctx, &long_cfg, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  tinyfed_config_t space_id{"dev 1", 64, 10, 16, key};
  EXPECT_EQ(tinyfed_init(&ctx, &space_id, arena.data(), arena.size()), TINYFED_ERR_ARGUMENT);
  tinyfed_config_t too_many_classes{"dev-1", 64, 40, 16, key};
  EXPECT_EQ(tinyfed_init(&ctx, &too_many_classes, arena.data(), arena.size()),
            TINYFED_ERR_ARGUMENT);
}

TEST(CallOrder, TrainEncodeClassifyNeedATask) {
  Device dev("dev-1");
  QuantizedDataset data = MakeBlobs(1, 2, 32, 64, 10, 1.0, 6.0 / 127, 0);
  tinyfed_dataset_t view = data.view();
  EXPECT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_ERR_STATE);
  uint8_t buf[1024];
  size_t len = 0;
  EXPECT_EQ(tinyfed_update_encode(dev.ctx(), buf, sizeof buf, &len), TINYFED_ERR_STATE);
  uint32_t label = 0;
  EXPECT_EQ(tinyfed_classify(dev.ctx(), data.x.data(), &label), TINYFED_ERR_STATE);
  tinyfed_task_info_t info;
  EXPECT_EQ(tinyfed_task_info(dev.ctx(), &info), TINYFED_ERR_STATE);

  ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  // Loaded but not trained: still nothing to encode.
  EXPECT_EQ(tinyfed_update_encode(dev.ctx(), buf, sizeof buf, &len), TINYFED_ERR_STATE);
  EXPECT_EQ(tinyfed_classify(dev.ctx(), data.x.data(), &label), TINYFED_OK);
}

TEST(Train, RejectsDatasetsThatDoNotFitTheTask) {
  Device dev("dev-1");
  ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  QuantizedDataset data = MakeBlobs(1, 2, 32, 64, 10, 1.0, 6.0 / 127, 0);
  tinyfed_dataset_t view = data.view();

  tinyfed_dataset_t wrong_features = view;
  wrong_features.feature_count = 63;
  EXPECT_EQ(tinyfed_train(dev.ctx(), &wrong_features), TINYFED_ERR_DATASET);

  tinyfed_dataset_t empty = view;
  empty.count = 0;
  EXPECT_EQ(tinyfed_train(dev.ctx(), &empty), TINYFED_ERR_DATASET);

  std::vector<uint8_t> bad_labels = data.y;
  bad_labels[5] = 10;  // classes are 0..9
  tinyfed_dataset_t bad = view;
  bad.labels = bad_labels.data();
  EXPECT_EQ(tinyfed_train(dev.ctx(), &bad), TINYFED_ERR_DATASET);

  tinyfed_dataset_t null_features = view;
  null_features.features = nullptr;
  EXPECT_EQ(tinyfed_train(dev.ctx(), &null_features), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_train(dev.ctx(), nullptr), TINYFED_ERR_ARGUMENT);

  // None of the failures dropped the task: a valid dataset still trains.
  EXPECT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
}

TEST(Encode, ReportsTooSmallBuffer) {
  Device dev("dev-1");
  ASSERT_EQ(dev.Load(BuildTask(TaskParams{})), TINYFED_OK);
  QuantizedDataset data = MakeBlobs(1, 2, 32, 64, 10, 1.0, 6.0 / 127, 0);
  tinyfed_dataset_t view = data.view();
  ASSERT_EQ(tinyfed_train(dev.ctx(), &view), TINYFED_OK);
  std::vector<uint8_t> buf(100);
  size_t len = 0;
  EXPECT_EQ(tinyfed_update_encode(dev.ctx(), buf.data(), buf.size(), &len),
            TINYFED_ERR_BUFFER_TOO_SMALL);
  uint8_t tiny[4];
  EXPECT_EQ(tinyfed_checkin_encode(dev.ctx(), 10, tiny, sizeof tiny, &len),
            TINYFED_ERR_BUFFER_TOO_SMALL);
}

TEST(StatusName, NamesEveryStatus) {
  for (int s = TINYFED_OK; s >= TINYFED_ERR_DATASET; --s) {
    EXPECT_STRNE(tinyfed_status_name(static_cast<tinyfed_status_t>(s)),
                 "TINYFED_ERR_UNKNOWN") << s;
  }
  EXPECT_STREQ(tinyfed_status_name(TINYFED_ERR_CHECKSUM), "TINYFED_ERR_CHECKSUM");
}

}  // namespace
}  // namespace tinyfed::testing
