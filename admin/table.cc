#include "table.h"

#include <algorithm>
#include <cassert>
#include <ctime>

#include "absl/strings/str_format.h"

namespace tinyfed::admin {
namespace {

void ReplaceControlBytes(std::string* text) {
  for (char& c : *text) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
}

}  // namespace

Table::Table(std::vector<std::string> headers)
    : headers_(std::move(headers)), right_(headers_.size(), false) {}

void Table::AlignRight(size_t column) {
  assert(column < right_.size());
  right_[column] = true;
}

void Table::AddRow(std::vector<std::string> cells) {
  assert(cells.size() == headers_.size());
  for (std::string& cell : cells) ReplaceControlBytes(&cell);
  rows_.push_back(std::move(cells));
}

std::string Table::Render() const {
  std::vector<size_t> width(headers_.size());
  for (size_t c = 0; c < headers_.size(); ++c) width[c] = headers_[c].size();
  for (const auto& row : rows_) {
    for (size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  }
  std::string out;
  auto render_line = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (size_t c = 0; c < cells.size(); ++c) {
      if (c > 0) line += "  ";
      const std::string pad(width[c] - cells[c].size(), ' ');
      line += right_[c] ? pad + cells[c] : cells[c] + pad;
    }
    // The last column's padding would be trailing spaces.
    line.erase(line.find_last_not_of(' ') + 1);
    out += line;
    out += '\n';
  };
  render_line(headers_);
  for (const auto& row : rows_) render_line(row);
  return out;
}

std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& lines) {
  size_t key_width = 0;
  for (const auto& [key, value] : lines) key_width = std::max(key_width, key.size() + 1);
  std::string out;
  for (const auto& [key, value] : lines) {
    std::string shown = value;
    ReplaceControlBytes(&shown);
    out += absl::StrFormat("%-*s  %s\n", static_cast<int>(key_width), key + ":", shown);
  }
  return out;
}

std::string FormatUnixMs(int64_t unix_ms) {
  if (unix_ms == 0) return "-";
  // Floor division, so that a time before 1970 still truncates toward the
  // earlier second.
  int64_t seconds = unix_ms / 1000;
  if (unix_ms % 1000 < 0) --seconds;
  const std::time_t t = static_cast<std::time_t>(seconds);
  std::tm utc{};
  if (gmtime_r(&t, &utc) == nullptr) return absl::StrFormat("(%d ms)", unix_ms);
  return absl::StrFormat("%04d-%02d-%02dT%02d:%02d:%02dZ", utc.tm_year + 1900, utc.tm_mon + 1,
                         utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec);
}

std::string FormatDurationMs(int64_t ms) {
  if (ms < 0) {
    // -INT64_MIN does not exist; a duration that long is not one anyone reads.
    return "-" + FormatDurationMs(ms == INT64_MIN ? INT64_MAX : -ms);
  }
  constexpr int64_t kSecond = 1000, kMinute = 60 * kSecond, kHour = 60 * kMinute,
                    kDay = 24 * kHour;
  if (ms < kSecond) return absl::StrFormat("%dms", ms);
  if (ms < kMinute) return absl::StrFormat("%ds", ms / kSecond);
  if (ms < kHour) return absl::StrFormat("%dm%02ds", ms / kMinute, ms % kMinute / kSecond);
  if (ms < kDay) return absl::StrFormat("%dh%02dm", ms / kHour, ms % kHour / kMinute);
  return absl::StrFormat("%dd%02dh", ms / kDay, ms % kDay / kHour);
}

std::string FormatQ16(uint32_t value_q16) {
  const uint64_t ten_thousandths = (uint64_t{value_q16} * 10000 + 32768) >> 16;
  return absl::StrFormat("%d.%04d", ten_thousandths / 10000, ten_thousandths % 10000);
}

}  // namespace tinyfed::admin
