// tinyfed-admin's output for people: aligned tables, UTC times, durations,
// Q16 losses, and the per-response formats built on them.
#include "table.h"

#include <gtest/gtest.h>

#include "admin_output.h"

namespace tinyfed::admin {
namespace {

TEST(TableTest, ColumnsAreAlignedToTheWidestCellWithoutTrailingSpaces) {
  Table table({"ID", "NAME", "NOTE"});
  table.AlignRight(0);
  table.AddRow({"1", "alpha", ""});
  table.AddRow({"100", "b", "x"});
  EXPECT_EQ(table.Render(),
            " ID  NAME   NOTE\n"
            "  1  alpha\n"
            "100  b      x\n");
  EXPECT_EQ(table.row_count(), 2u);
}

TEST(TableTest, AnEmptyTableIsItsHeader) {
  EXPECT_EQ(Table({"A", "B"}).Render(), "A  B\n");
}

TEST(TableTest, ControlBytesCannotBreakLinesOrReachTheTerminal) {
  Table table({"ACTOR", "DETAIL"});
  table.AddRow({"token:a\x1b[2J", "line\nbreak\x7f"});
  EXPECT_EQ(table.Render(),
            "ACTOR        DETAIL\n"
            "token:a?[2J  line?break?\n");
}

TEST(TableTest, KeyValuesAlignTheValues) {
  EXPECT_EQ(RenderKeyValues({{"round", "3"}, {"latest version", "7\n"}}),
            "round:           3\n"
            "latest version:  7?\n");
}

TEST(TableTest, TimesAreUtcIso8601ToTheSecond) {
  // `date -u -d @1714566896` prints Wed May 1 12:34:56 UTC 2024.
  EXPECT_EQ(FormatUnixMs(1714566896123), "2024-05-01T12:34:56Z");
  EXPECT_EQ(FormatUnixMs(1714566896999), "2024-05-01T12:34:56Z") << "truncated, not rounded";
  EXPECT_EQ(FormatUnixMs(1), "1970-01-01T00:00:00Z");
  EXPECT_EQ(FormatUnixMs(-1), "1969-12-31T23:59:59Z");
  EXPECT_EQ(FormatUnixMs(0), "-") << "0 is 'never' in admin.proto";
}

TEST(TableTest, DurationsReadAsPeopleWriteThem) {
  EXPECT_EQ(FormatDurationMs(0), "0ms");
  EXPECT_EQ(FormatDurationMs(999), "999ms");
  EXPECT_EQ(FormatDurationMs(1000), "1s");
  EXPECT_EQ(FormatDurationMs(59999), "59s");
  EXPECT_EQ(FormatDurationMs(60000), "1m00s");
  EXPECT_EQ(FormatDurationMs(245000), "4m05s");
  EXPECT_EQ(FormatDurationMs(3 * 3600000 + 4 * 60000 + 59999), "3h04m");
  EXPECT_EQ(FormatDurationMs(2 * 86400000 + 3 * 3600000), "2d03h");
  EXPECT_EQ(FormatDurationMs(-1500), "-1s");
}

TEST(TableTest, Q16HasFourDecimalsRoundedToNearest) {
  EXPECT_EQ(FormatQ16(0), "0.0000");
  EXPECT_EQ(FormatQ16(65536), "1.0000");
  // ln 2 = 0.693147 -> 45426 in Q16.16 (0.69314575).
  EXPECT_EQ(FormatQ16(45426), "0.6931");
  // 3 / 65536 = 0.0000458 is below half a ten-thousandth, 4 / 65536 =
  // 0.0000610 above.
  EXPECT_EQ(FormatQ16(3), "0.0000");
  EXPECT_EQ(FormatQ16(4), "0.0001");
  // 65535.99998 rounds up to the next integer.
  EXPECT_EQ(FormatQ16(0xffffffffu), "65536.0000");
}

TEST(AdminOutputTest, VersionsShowLineageAndMetrics) {
  v1::ListVersionsResponse response;
  v1::ModelVersion* rollback = response.add_versions();
  rollback->set_version(4);
  rollback->set_parent_version(3);
  rollback->set_restored_from(2);
  rollback->set_created_unix_ms(1714566896000);
  v1::ModelVersion* trained = response.add_versions();
  trained->set_version(3);
  trained->set_parent_version(2);
  trained->set_round(2);
  trained->mutable_metrics()->set_participants(12);
  trained->mutable_metrics()->set_samples(3400);
  trained->mutable_metrics()->set_clipped_updates(1);
  trained->mutable_metrics()->set_mean_local_loss_q16(65536 + 32768);
  v1::ModelVersion* initial = response.add_versions();
  initial->set_version(1);
  // Devices that trained from v1 evaluated it: 200 of 300 samples right.
  initial->mutable_fleet_evaluation()->set_devices(3);
  initial->mutable_fleet_evaluation()->set_samples(300);
  initial->mutable_fleet_evaluation()->set_correct(200);
  initial->mutable_fleet_evaluation()->set_loss_sum_q16(300 * 65536);
  EXPECT_EQ(FormatVersions(response),
            "VERSION  PARENT  ORIGIN         STAGE  PARTICIPANTS  SAMPLES  CAPPED  CLIPPED  "
            "REJECTED    LOSS  FLEET ACC  FLEET DEVICES  COMMITTED (UTC)\n"
            "      4       3  rollback to 2  -                 0        0       0        0  "
            "       0       -          -              -  2024-05-01T12:34:56Z\n"
            "      3       2  round 2        -                12     3400       0        1  "
            "       0  1.5000          -              -  -\n"
            "      1       -  initial        -                 0        0       0        0  "
            "       0       -     0.6667              3  -\n");
}

// The FLEET ACC cell of a one-version table whose fleet evaluation has
// `correct` of `samples` right.
std::string FleetAccuracyCell(uint64_t correct, uint64_t samples) {
  v1::ListVersionsResponse response;
  v1::ModelVersion* v = response.add_versions();
  v->set_version(2);
  v->mutable_fleet_evaluation()->set_devices(1);
  v->mutable_fleet_evaluation()->set_samples(samples);
  v->mutable_fleet_evaluation()->set_correct(correct);
  const std::string table = FormatVersions(response);
  const std::string header = table.substr(0, table.find('\n'));
  const std::string row = table.substr(header.size() + 1);
  // Right-aligned under its header: the cell ends where "FLEET ACC" does.
  const size_t end = header.find("FLEET ACC") + std::string("FLEET ACC").size();
  const size_t start = row.rfind(' ', end - 1) + 1;
  return row.substr(start, end - start);
}

TEST(AdminOutputTest, FleetAccuracyIsRoundedHalfUpFromTheExactSums) {
  EXPECT_EQ(FleetAccuracyCell(1, 8), "0.1250");
  EXPECT_EQ(FleetAccuracyCell(0, 5), "0.0000");
  EXPECT_EQ(FleetAccuracyCell(5, 5), "1.0000");
  // 1/20000 = 0.00005 exactly: half rounds up; just below it rounds down.
  EXPECT_EQ(FleetAccuracyCell(1, 20000), "0.0001");
  EXPECT_EQ(FleetAccuracyCell(1, 20001), "0.0000");
  // Sums beyond 2^53, where a double loses the last units: correct is
  // floor(samples x 0.99995), a hair below the half, so 0.9999.
  const uint64_t samples = uint64_t{1} << 61;
  const uint64_t correct = samples / 20000 * 19999 + (samples % 20000) * 19999 / 20000;
  EXPECT_EQ(FleetAccuracyCell(correct, samples), "0.9999");
}

TEST(AdminOutputTest, StatusSaysWhoPausedAndWhenTheRoundEnds) {
  v1::ServerStatus status;
  status.set_server_version("0.1.0");
  status.set_now_unix_ms(1714566896000);
  status.set_paused(true);
  status.set_paused_since_unix_ms(1714566896000 - 90000);
  status.set_paused_by("token:alice");
  status.set_latest_version(7);
  status.set_serving_version(7);
  v1::RoundStatus* round = status.mutable_round();
  round->set_round(9);
  round->set_base_version(7);
  round->set_open(true);
  round->set_tasks_issued(3);
  round->set_tasks_limit(4);
  round->set_accepted(2);
  round->set_target_updates(3);
  round->set_min_updates(1);
  round->set_time_left_ms(65000);
  round->set_deadline_unix_ms(1714566896000 + 65000);
  const std::string text = FormatServerStatus(status);
  EXPECT_NE(text.find("paused:           yes, since 2024-05-01T12:33:26Z (1m30s) by token:alice\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("round:            9 (open) on version 7\n"), std::string::npos) << text;
  EXPECT_NE(text.find("tasks issued:     3 of 4\n"), std::string::npos) << text;
  EXPECT_NE(text.find("deadline:         2024-05-01T12:36:01Z (in 1m05s)\n"), std::string::npos)
      << text;
}

TEST(AdminOutputTest, AuditAndDevicesAreTables) {
  v1::ListAuditResponse audit;
  v1::AuditRecord* record = audit.add_records();
  record->set_id(12);
  record->set_at_unix_ms(1714566896000);
  record->set_actor("token:alice");
  record->set_action("revoke");
  record->set_detail("device d-7: lost");
  EXPECT_EQ(FormatAudit(audit),
            "ID  TIME (UTC)            ACTOR        ACTION  DETAIL\n"
            "12  2024-05-01T12:34:56Z  token:alice  revoke  device d-7: lost\n");
  v1::ListDevicesResponse devices;
  v1::DeviceSeen* seen = devices.add_seen();
  seen->set_device_id("d-7");
  seen->set_last_round(4);
  seen->set_tasks(4);
  seen->set_updates(3);
  seen->set_revoked(true);
  v1::RevokedDevice* revoked = devices.add_revoked();
  revoked->set_device_id("d-7");
  revoked->set_revoked_unix_ms(1714566896000);
  EXPECT_EQ(FormatDevices(devices),
            "DEVICE  LAST TASK (UTC)  LAST ROUND  TASKS  UPDATES  REVOKED\n"
            "d-7     -                         4      4        3  yes\n"
            "\n"
            "REVOKED DEVICE  REVOKED AT (UTC)\n"
            "d-7             2024-05-01T12:34:56Z\n");
}

}  // namespace
}  // namespace tinyfed::admin
