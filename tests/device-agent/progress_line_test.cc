// The progress line: at most one redraw per interval on a simulated clock,
// whatever the rate of events, and the run's time-left estimate.
#include "progress_line.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>

namespace tinyfed::agent {
namespace {

using std::chrono::milliseconds;
using TimePoint = std::chrono::steady_clock::time_point;

// What was written to a tmpfile.
std::string Contents(FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  return out;
}

TEST(ProgressLine, AtMostTenRedrawsASecondWhateverTheEventRate) {
  // The run: 23,403 events in 9 s, evenly spread (one every 385 us).
  TimePoint now{};
  FILE* out = std::tmpfile();
  ProgressLine line(out, milliseconds(100), [&] { return now; });
  int texts_made = 0;
  const int events = 23'403;
  for (int i = 0; i < events; ++i) {
    now = TimePoint{} + std::chrono::microseconds(9'000'000LL * i / events);
    line.Update([&] {
      ++texts_made;
      return "  round 3/30: " + std::to_string(i) + " events";
    });
  }
  // 9 s at one redraw per 100 ms: the first at 0 and one per interval after.
  EXPECT_LE(line.redraws(), 91u);
  EXPECT_GE(line.redraws(), 89u) << "a redraw in every interval with events";
  EXPECT_EQ(texts_made, static_cast<int>(line.redraws())) << "text made only to be drawn";
  const std::string written = Contents(out);
  EXPECT_EQ(static_cast<uint64_t>(std::count(written.begin(), written.end(), '\r')),
            line.redraws());
  EXPECT_LT(written.size(), 91u * 40u) << "about 30 bytes per redraw, not 1.3 MB";
  std::fclose(out);
}

TEST(ProgressLine, ShorterTextOverwritesTheLongerAndClearBlanksTheLine) {
  TimePoint now{};
  FILE* out = std::tmpfile();
  ProgressLine line(out, milliseconds(100), [&] { return now; });
  line.Update([] { return std::string("abcdef"); });
  now += milliseconds(50);
  line.Update([] { return std::string("never drawn"); });
  now += milliseconds(50);
  line.Update([] { return std::string("xy"); });
  line.Clear();
  // The interval runs on from the last redraw, across Clear().
  now += milliseconds(99);
  line.Update([] { return std::string("too soon"); });
  now += milliseconds(1);
  line.Update([] { return std::string("z"); });
  EXPECT_EQ(Contents(out), "\rabcdef\rxy    \r  \r\rz");
  EXPECT_EQ(line.redraws(), 3u);
  std::fclose(out);
}

TEST(ProgressLine, ClearBeforeAnyRedrawWritesNothing) {
  FILE* out = std::tmpfile();
  ProgressLine line(out);
  line.Clear();
  EXPECT_EQ(Contents(out), "");
  std::fclose(out);
}

TEST(TimeLeft, MeanOfFinishedRoundsTimesRoundsToRunLessTheCurrentRound) {
  // 3 rounds in 6 s: 2 s each; 7 of 10 to run, 0.5 s into the 4th.
  EXPECT_DOUBLE_EQ(EstimateSecondsLeft(6.0, 3, 10, 0.5), 13.5);
  // A slow current round does not make the estimate negative.
  EXPECT_DOUBLE_EQ(EstimateSecondsLeft(2.0, 1, 2, 5.0), 0.0);
  EXPECT_LT(EstimateSecondsLeft(0.0, 0, 30, 1.0), 0.0) << "no round finished yet";
  EXPECT_EQ(FormatTimeLeft(-1), "time left: after round 1");
  EXPECT_EQ(FormatTimeLeft(0), "about 0s left");
  EXPECT_EQ(FormatTimeLeft(13.5), "about 14s left");
  EXPECT_EQ(FormatTimeLeft(59.2), "about 1m00s left");
  EXPECT_EQ(FormatTimeLeft(125), "about 2m05s left");
  EXPECT_EQ(FormatTimeLeft(3 * 3600 + 7 * 60 + 30), "about 3h07m left");
}

}  // namespace
}  // namespace tinyfed::agent
