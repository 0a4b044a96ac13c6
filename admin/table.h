// Output for people: aligned tables, UTC times and durations, as
// `tinyfed-admin` prints them when --json is not given. Scripts read --json
// instead; nothing here is meant to be parsed. Plain values: safe for
// concurrent use.
#ifndef TINYFED_ADMIN_TABLE_H_
#define TINYFED_ADMIN_TABLE_H_

#include <cstdint>
#include <string>
#include <vector>

namespace tinyfed::admin {

// Columns padded to their widest cell (header included) and separated by
// two spaces, as `kubectl get` prints them: one line per row, the header
// first, no trailing spaces. A right-aligned column suits numbers. Widths
// count bytes: cells are expected to be ASCII (device ids, actor names and
// numbers are).
class Table {
 public:
  explicit Table(std::vector<std::string> headers);

  // Aligns column `column` (0-based) to the right. REQUIRES: column <
  // number of headers.
  void AlignRight(size_t column);

  // REQUIRES: cells.size() equals the number of headers. Control bytes
  // (below 0x20, and 0x7F) in a cell become '?': a reason or a name an
  // operator typed must not break the table's lines or reach the terminal
  // as an escape sequence.
  void AddRow(std::vector<std::string> cells);

  size_t row_count() const { return rows_.size(); }

  // The table, each line ending in '\n'.
  std::string Render() const;

 private:
  std::vector<std::string> headers_;
  std::vector<bool> right_;
  std::vector<std::vector<std::string>> rows_;
};

// `lines` of (key, value) as "key:  value" with the values aligned one
// column after the longest key, each line ending in '\n'; control bytes in
// a value become '?' as in Table::AddRow.
std::string RenderKeyValues(const std::vector<std::pair<std::string, std::string>>& lines);

// Milliseconds since the Unix epoch as UTC ISO-8601 to the second,
// "2024-05-01T12:34:56Z" (truncated, not rounded). 0 means "never" in the
// Admin service's messages and gives "-".
std::string FormatUnixMs(int64_t unix_ms);

// A duration for people: "850ms" below a second, "42s" below a minute,
// "4m05s" below an hour, "3h04m" below a day, "2d03h" beyond (each
// truncated to its last unit). A negative duration gets a leading '-'.
std::string FormatDurationMs(int64_t ms);

// A Q16.16 value (a loss) with 4 decimals, rounded to nearest: "0.6931".
std::string FormatQ16(uint32_t value_q16);

}  // namespace tinyfed::admin

#endif  // TINYFED_ADMIN_TABLE_H_
