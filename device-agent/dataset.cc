#include "dataset.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <numeric>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <system_error>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "tinyfed_common/host_numerics.h"

namespace tinyfed::agent {
namespace {

// Protocol bounds of a model head (proto/tinyfed/v1/model.options): a dataset
// the devices cannot learn is rejected when it is loaded, not mid-run.
constexpr int kMaxClasses = 32;
constexpr int kMaxWeights = 4096;

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) {
    return absl::NotFoundError(absl::StrCat("cannot read ", path, ": is a directory"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    const int error = errno;
    return absl::NotFoundError(
        absl::StrCat("cannot read ", path, ": ", std::generic_category().message(error)));
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  if (in.bad()) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  return buffer.str();
}

// from_chars does not take the '+' that strtod and most CSV writers allow;
// drop one, but not one followed by another sign.
std::optional<absl::string_view> WithoutPlus(absl::string_view text) {
  if (text.empty() || text.front() != '+') return text;
  text.remove_prefix(1);
  if (!text.empty() && (text.front() == '+' || text.front() == '-')) return std::nullopt;
  return text;
}

enum class ParseResult { kOk, kMalformed, kOutOfRange, kNotFinite };

// The whole of `text` (an optional '+' first) as a number of type T.
template <typename T>
ParseResult ParseNumber(absl::string_view text, T* out) {
  const std::optional<absl::string_view> body = WithoutPlus(text);
  if (!body || body->empty()) return ParseResult::kMalformed;
  const char* end = body->data() + body->size();
  const auto [ptr, ec] = std::from_chars(body->data(), end, *out);
  if (ptr != end) return ParseResult::kMalformed;
  if (ec == std::errc::result_out_of_range) return ParseResult::kOutOfRange;
  return ec == std::errc() ? ParseResult::kOk : ParseResult::kMalformed;
}

// The whole of `text` as a finite double. NaN and infinities are refused:
// standardization would turn one into a column of NaNs. Magnitudes beyond a
// double (1e999, and 1e-400, which from_chars does not round to 0) are out of
// range.
ParseResult ParseReal(absl::string_view text, double* out) {
  const ParseResult r = ParseNumber(text, out);
  if (r != ParseResult::kOk) return r;
  return std::isfinite(*out) ? ParseResult::kOk : ParseResult::kNotFinite;
}

ParseResult ParseLabel(absl::string_view text, int64_t* out) { return ParseNumber(text, out); }

// Whitespace around `text`, except `keep` (a tab delimiter separates
// fields even where it leads or ends a line).
absl::string_view StripWhitespaceExcept(absl::string_view text, char keep) {
  const auto strip = [keep](char c) { return c != keep && absl::ascii_isspace(static_cast<unsigned char>(c)); };
  while (!text.empty() && strip(text.front())) text.remove_prefix(1);
  while (!text.empty() && strip(text.back())) text.remove_suffix(1);
  return text;
}

// True when no field of a line is a number: the shape of a header. One
// field is not a header but the sign of another delimiter, reported as such.
bool LooksLikeHeader(const std::vector<absl::string_view>& fields, char delimiter) {
  if (fields.size() < 2) return false;
  for (absl::string_view field : fields) {
    double ignored = 0;
    field = StripWhitespaceExcept(field, delimiter);
    if (field.empty()) return false;
    const ParseResult r = ParseReal(field, &ignored);
    // "nan" and "inf" are words to a reader; 1e999 is a number out of range.
    if (r == ParseResult::kOk || r == ParseResult::kOutOfRange) return false;
  }
  return true;
}

// Rows `indices` of `data`, in that order, with the same schema.
Dataset Subset(const Dataset& data, const std::vector<uint32_t>& indices) {
  Dataset out;
  out.features = data.features;
  out.classes = data.classes;
  out.class_names = data.class_names;
  out.x.resize(static_cast<Eigen::Index>(indices.size()), data.x.cols());
  out.y.reserve(indices.size());
  for (size_t i = 0; i < indices.size(); ++i) {
    out.x.row(static_cast<Eigen::Index>(i)) = data.x.row(indices[i]);
    out.y.push_back(data.y[indices[i]]);
  }
  return out;
}

// std::shuffle and the distributions are specified by their results' law, not
// their algorithm: a seed reproduces a partition with one standard library.
std::vector<uint32_t> ShuffledRange(size_t n, std::mt19937_64& rng) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::shuffle(order.begin(), order.end(), rng);
  return order;
}

absl::Status CheckPartitionArgs(size_t samples, size_t devices) {
  if (samples > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError(
        absl::StrCat(samples, " samples do not fit 32-bit sample indices"));
  }
  if (devices == 0) return absl::InvalidArgumentError("devices must be at least 1");
  if (devices > samples) {
    return absl::InvalidArgumentError(
        absl::StrCat(devices, " devices for ", samples, " samples: every device needs one"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<char> ParseCsvDelimiter(const std::string& text) {
  if (text == "tab" || text == "\\t") return '\t';
  const auto refuse = [&](absl::string_view why) {
    return absl::InvalidArgumentError(
        absl::StrCat("delimiter '", text, "' ", why,
                     "; give one character, or 'tab' (or \\t) for a tab"));
  };
  if (text.size() != 1) return refuse(text.empty() ? "is empty" : "is not one character");
  const char c = text[0];
  if (absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '+' || c == '-') {
    return refuse("can be part of a number");
  }
  if (c == '#' || c == '"' || c == '\n' || c == '\r' || c == '\0') {
    return refuse("has a meaning of its own in a CSV file");
  }
  return c;
}

absl::StatusOr<Dataset> LoadCsv(const std::string& path, LabelColumn label) {
  CsvFormat format;
  format.label = label;
  return LoadCsv(path, format);
}

absl::StatusOr<Dataset> LoadCsv(const std::string& path, const CsvFormat& format) {
  const LabelColumn label = format.label;
  const char delimiter = format.delimiter;
  absl::StatusOr<std::string> text = ReadFile(path);
  if (!text.ok()) return text.status();
  absl::string_view rest = *text;
  if (rest.substr(0, 3) == "\xEF\xBB\xBF") rest.remove_prefix(3);  // UTF-8 byte order mark

  std::vector<double> values;  // row-major, rows x features
  std::vector<int64_t> labels;
  std::set<int64_t> distinct_labels;
  int width = 0;
  int line_number = 0;
  int header_line = 0;
  bool first_line = true;  // the first line neither blank nor a comment
  for (absl::string_view line : absl::StrSplit(rest, '\n')) {
    ++line_number;
    // Also strips a CRLF's '\r'.
    const absl::string_view content = StripWhitespaceExcept(line, delimiter);
    if (content.empty() || content.front() == '#') continue;
    const std::vector<absl::string_view> fields = absl::StrSplit(content, delimiter);
    const bool header_possible = first_line;
    first_line = false;
    if (header_possible &&
        (format.header == CsvHeader::kPresent ||
         (format.header == CsvHeader::kDetect && LooksLikeHeader(fields, delimiter)))) {
      header_line = line_number;
      continue;
    }
    const auto error = [&](auto&&... parts) {
      return absl::InvalidArgumentError(absl::StrCat(path, ":", line_number, ": ", parts...));
    };
    const int got = static_cast<int>(fields.size());
    if (width == 0) {
      if (got < 2) return error("expected at least 2 fields (features and a label), got ", got);
      width = got;
    } else if (got != width) {
      return error("expected ", width, " fields, got ", got);
    }
    // Fields are numbered from 1 across the whole line, label included, as a
    // user counts columns in an editor.
    const int label_field = label == LabelColumn::kFirst ? 0 : width - 1;
    for (int f = 0; f < width; ++f) {
      const absl::string_view field =
          StripWhitespaceExcept(fields[static_cast<size_t>(f)], delimiter);
      if (f == label_field) {
        int64_t value = 0;
        switch (ParseLabel(field, &value)) {
          case ParseResult::kOk:
            break;
          case ParseResult::kMalformed:
          case ParseResult::kNotFinite:
            return error("label '", field, "' is not an integer");
          case ParseResult::kOutOfRange:
            return error("label '", field, "' is out of range");
        }
        if (distinct_labels.insert(value).second &&
            distinct_labels.size() > static_cast<size_t>(kMaxClasses)) {
          return error("label '", field, "' is class ", distinct_labels.size(),
                       "; at most ", kMaxClasses, " classes are supported");
        }
        labels.push_back(value);
        continue;
      }
      double value = 0;
      switch (ParseReal(field, &value)) {
        case ParseResult::kOk:
          break;
        case ParseResult::kMalformed:
          return error("field ", f + 1, " '", field, "' is not a number");
        case ParseResult::kOutOfRange:
          return error("field ", f + 1, " '", field, "' is out of the range of a double");
        case ParseResult::kNotFinite:
          return error("field ", f + 1, " '", field, "' is not a finite number");
      }
      values.push_back(value);
    }
  }

  if (labels.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": no samples",
        header_line == 0 ? "" : absl::StrCat(" (line ", header_line, " is the header)")));
  }
  const int features = width - 1;
  const int classes = static_cast<int>(distinct_labels.size());
  if (classes < 2) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": every sample has label ", labels.front(), "; need at least 2 classes"));
  }
  if (features > kMaxWeights / classes) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": ", features, " features x ", classes, " classes exceed the model's ", kMaxWeights,
        " weights (at most ", kMaxWeights / classes, " features for ", classes, " classes)"));
  }

  Dataset data;
  data.header_line = header_line;
  data.features = features;
  data.classes = classes;
  std::map<int64_t, uint8_t> class_of;
  for (const int64_t value : distinct_labels) {
    class_of[value] = static_cast<uint8_t>(data.class_names.size());
    data.class_names.push_back(absl::StrCat(value));
  }
  const size_t rows = labels.size();
  data.x.resize(static_cast<Eigen::Index>(rows), features);
  data.y.reserve(rows);
  for (size_t r = 0; r < rows; ++r) {
    for (int f = 0; f < features; ++f) {
      data.x(static_cast<Eigen::Index>(r), f) = values[r * static_cast<size_t>(features) +
                                                       static_cast<size_t>(f)];
    }
    data.y.push_back(class_of[labels[r]]);
  }
  return data;
}

absl::StatusOr<Dataset> LoadDigits(const std::string& data_dir) {
  const std::string path = (std::filesystem::path(data_dir) / "digits.csv").string();
  absl::StatusOr<Dataset> data = LoadCsv(path, LabelColumn::kLast);
  if (absl::IsNotFound(data.status())) {
    return absl::NotFoundError(absl::StrCat(
        data.status().message(),
        "; run deploy/setup.sh to fetch the UCI digits, or set TINYFED_DATA_DIR"));
  }
  if (!data.ok()) return data.status();
  if (data->features != 64 || data->classes != 10) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": expected the UCI digits (64 features, 10 classes), got ", data->features,
        " features and ", data->classes, " classes"));
  }
  return data;
}

std::string DefaultDataDir() {
  const auto env = [](const char* name) -> std::string {
    const char* value = std::getenv(name);
    return value == nullptr ? std::string() : std::string(value);
  };
  if (std::string dir = env("TINYFED_DATA_DIR"); !dir.empty()) return dir;
  if (std::string cache = env("XDG_CACHE_HOME"); !cache.empty()) {
    return (std::filesystem::path(cache) / "tinyfed").string();
  }
  // Without $HOME (some service managers) the cache is relative to the
  // working directory rather than the root.
  return (std::filesystem::path(env("HOME")) / ".cache" / "tinyfed").string();
}

absl::StatusOr<Split> StratifiedSplit(const Dataset& data, double test_fraction, uint64_t seed) {
  if (!(test_fraction > 0.0 && test_fraction < 1.0)) {
    return absl::InvalidArgumentError(
        absl::StrCat("test fraction ", test_fraction, " is not strictly between 0 and 1"));
  }
  if (static_cast<size_t>(data.x.rows()) != data.y.size()) {
    return absl::InvalidArgumentError(absl::StrCat("dataset has ", data.x.rows(),
                                                   " feature rows but ", data.y.size(), " labels"));
  }
  if (data.y.size() > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("dataset too large for 32-bit sample indices");
  }
  std::vector<std::vector<uint32_t>> by_class(static_cast<size_t>(std::max(data.classes, 0)));
  for (size_t i = 0; i < data.y.size(); ++i) {
    if (static_cast<size_t>(data.y[i]) >= by_class.size()) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample ", i, " has label ", data.y[i], " but there are ", data.classes,
                       " classes"));
    }
    by_class[data.y[i]].push_back(static_cast<uint32_t>(i));
  }

  std::mt19937_64 rng(seed);
  std::vector<uint32_t> train, test;
  for (std::vector<uint32_t>& members : by_class) {
    std::shuffle(members.begin(), members.end(), rng);
    size_t take = static_cast<size_t>(std::llround(test_fraction * static_cast<double>(members.size())));
    if (members.size() >= 2) take = std::max<size_t>(take, 1);
    test.insert(test.end(), members.begin(), members.begin() + static_cast<std::ptrdiff_t>(take));
    train.insert(train.end(), members.begin() + static_cast<std::ptrdiff_t>(take), members.end());
  }
  if (train.empty() || test.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "test fraction ", test_fraction, " of ", data.y.size(), " samples leaves the ",
        train.empty() ? "training" : "test", " split empty"));
  }
  // File order, not grouped by class: a consumer that does not shuffle still
  // sees the classes mixed.
  std::sort(train.begin(), train.end());
  std::sort(test.begin(), test.end());
  return Split{Subset(data, train), Subset(data, test)};
}

QuantizedSplit StandardizeAndQuantize(const Split& split, double clip_sigma) {
  const Dataset& train = split.train;
  const Eigen::Index features = train.x.cols();
  // Population statistics (divide by n), as scikit-learn's StandardScaler. A
  // feature is constant when every training value is equal; comparing
  // values, not a computed deviation against a tolerance, keeps a merely
  // small-valued feature.
  Eigen::ArrayXd mean = Eigen::ArrayXd::Zero(features);
  Eigen::ArrayXd inv_std = Eigen::ArrayXd::Zero(features);
  if (train.x.rows() > 0) {
    mean = train.x.colwise().mean().transpose().array();
    for (Eigen::Index f = 0; f < features; ++f) {
      const auto column = train.x.col(f).array();
      if (column.maxCoeff() == column.minCoeff()) continue;
      const double variance = (column - mean(f)).square().mean();
      inv_std(f) = 1.0 / std::sqrt(variance);
    }
  }

  QuantizedSplit out;
  out.features = static_cast<int>(features);
  out.classes = train.classes;
  out.scale = clip_sigma / 127.0;
  out.zero_point = 0;
  out.train_y = train.y;
  out.test_y = split.test.y;
  const auto quantize = [&](const Eigen::MatrixXd& x, std::vector<int8_t>* q, Eigen::MatrixXd* real) {
    q->resize(static_cast<size_t>(x.rows() * features));
    real->resize(x.rows(), features);
    for (Eigen::Index r = 0; r < x.rows(); ++r) {
      for (Eigen::Index f = 0; f < features; ++f) {
        const double z = (x(r, f) - mean(f)) * inv_std(f);
        // The shared rounding (half away from zero), saturated symmetrically:
        // -128 would stand for a value beyond -clip_sigma.
        const int8_t v = std::max<int8_t>(QuantizeFeature(z, out.scale, 0), -127);
        (*q)[static_cast<size_t>(r * features + f)] = v;
        (*real)(r, f) = v * out.scale;
      }
    }
  };
  quantize(train.x, &out.train_x, &out.train_real);
  quantize(split.test.x, &out.test_x, &out.test_real);
  return out;
}

absl::StatusOr<std::vector<std::vector<uint32_t>>> PartitionIid(size_t samples, size_t devices,
                                                                uint64_t seed) {
  if (absl::Status s = CheckPartitionArgs(samples, devices); !s.ok()) return s;
  std::mt19937_64 rng(seed);
  const std::vector<uint32_t> order = ShuffledRange(samples, rng);
  std::vector<std::vector<uint32_t>> shards(devices);
  for (size_t i = 0; i < order.size(); ++i) shards[i % devices].push_back(order[i]);
  return shards;
}

absl::StatusOr<std::vector<std::vector<uint32_t>>> PartitionDirichlet(
    const std::vector<uint8_t>& labels, int classes, size_t devices, double alpha, uint64_t seed) {
  if (absl::Status s = CheckPartitionArgs(labels.size(), devices); !s.ok()) return s;
  if (!(alpha > 0.0) || !std::isfinite(alpha)) {
    return absl::InvalidArgumentError(absl::StrCat("Dirichlet alpha ", alpha, " is not positive"));
  }
  if (classes <= 0) return absl::InvalidArgumentError(absl::StrCat("classes ", classes, " < 1"));
  std::vector<std::vector<uint32_t>> by_class(static_cast<size_t>(classes));
  for (size_t i = 0; i < labels.size(); ++i) {
    if (labels[i] >= classes) {
      return absl::InvalidArgumentError(
          absl::StrCat("sample ", i, " has label ", labels[i], " but there are ", classes, " classes"));
    }
    by_class[labels[i]].push_back(static_cast<uint32_t>(i));
  }

  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::vector<std::vector<uint32_t>> shards(devices);
  std::vector<double> weights(devices);
  for (std::vector<uint32_t>& members : by_class) {
    std::shuffle(members.begin(), members.end(), rng);
    // Dirichlet(alpha) as normalized Gamma(alpha, 1) draws.
    double total = 0;
    for (double& w : weights) total += (w = gamma(rng));
    if (!(total > 0.0)) {
      // Every draw underflowed (alpha around 0.01 or less): the limit of
      // Dirichlet(alpha) as alpha -> 0 puts all the mass on one device.
      std::fill(weights.begin(), weights.end(), 0.0);
      weights[std::uniform_int_distribution<size_t>(0, devices - 1)(rng)] = 1.0;
      total = 1.0;
    }
    // Cut points at the rounded cumulative proportions: the shards' sizes sum
    // to the class's count whatever the rounding.
    const double n = static_cast<double>(members.size());
    double cumulative = 0;
    size_t begin = 0;
    for (size_t d = 0; d < devices; ++d) {
      cumulative += weights[d];
      const size_t end = d + 1 == devices
                             ? members.size()
                             : std::min(members.size(), static_cast<size_t>(std::llround(
                                                            cumulative / total * n)));
      if (end <= begin) continue;
      shards[d].insert(shards[d].end(), members.begin() + static_cast<std::ptrdiff_t>(begin),
                       members.begin() + static_cast<std::ptrdiff_t>(end));
      begin = end;
    }
  }
  // Mix the classes inside each shard, so that the back of a shard is a random
  // one of its samples and a device that does not shuffle still sees them mixed.
  for (std::vector<uint32_t>& shard : shards) std::shuffle(shard.begin(), shard.end(), rng);
  // devices <= samples, so while some shard is empty the largest holds at
  // least two: taking one never empties it.
  for (std::vector<uint32_t>& shard : shards) {
    if (!shard.empty()) continue;
    auto largest = std::max_element(shards.begin(), shards.end(),
                                    [](const auto& a, const auto& b) { return a.size() < b.size(); });
    shard.push_back(largest->back());
    largest->pop_back();
  }
  return shards;
}

absl::StatusOr<DriftSpec> ParseDriftSpec(const std::string& text) {
  auto bad = [](auto... parts) {
    return absl::InvalidArgumentError(absl::StrCat("--drift: ", parts...));
  };
  DriftSpec spec;
  bool have_round = false, have_fraction = false, have_kind = false;
  for (absl::string_view part : absl::StrSplit(text, ',')) {
    const size_t eq = part.find('=');
    if (eq == absl::string_view::npos) {
      return bad("'", part, "' is not KEY=VALUE (round=R,fraction=F,kind=label-swap|feature-shift)");
    }
    const absl::string_view key = part.substr(0, eq);
    const absl::string_view value = part.substr(eq + 1);
    bool* seen = key == "round" ? &have_round
                 : key == "fraction" ? &have_fraction
                 : key == "kind" ? &have_kind
                                 : nullptr;
    if (seen == nullptr) return bad("unknown key '", key, "' (round, fraction, kind)");
    if (*seen) return bad(key, " given twice");
    *seen = true;
    if (key == "round") {
      if (!absl::SimpleAtoi(value, &spec.round) || spec.round < 1) {
        return bad("round must be a round number >= 1, got '", value, "'");
      }
    } else if (key == "fraction") {
      if (!absl::SimpleAtod(value, &spec.fraction) || !(spec.fraction > 0 && spec.fraction <= 1)) {
        return bad("fraction must be in (0, 1], got '", value, "'");
      }
    } else if (value == "label-swap") {
      spec.kind = DriftKind::kLabelSwap;
    } else if (value == "feature-shift") {
      spec.kind = DriftKind::kFeatureShift;
    } else {
      return bad("kind must be 'label-swap' or 'feature-shift', got '", value, "'");
    }
  }
  if (!have_round) return bad("missing round (round=R,fraction=F,kind=...)");
  if (!have_fraction) return bad("missing fraction (round=R,fraction=F,kind=...)");
  if (!have_kind) return bad("missing kind (round=R,fraction=F,kind=...)");
  return spec;
}

void ApplyDrift(DriftKind kind, int features, size_t count, int8_t* x, uint8_t* y) {
  if (kind == DriftKind::kLabelSwap) {
    for (size_t i = 0; i < count; ++i) {
      if (y[i] <= 1) y[i] = static_cast<uint8_t>(1 - y[i]);
    }
    return;
  }
  const size_t n = count * static_cast<size_t>(features);
  for (size_t i = 0; i < n; ++i) {
    x[i] = static_cast<int8_t>(std::min(127, x[i] + kFeatureShiftSteps));
  }
}

}  // namespace tinyfed::agent
