// Link framing: frames survive the trip byte by byte, and corrupted,
// truncated, oversized and noise-interleaved streams are rejected frame by
// frame while the link recovers at the next delimiter.
#include "tinyfed/link.h"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

namespace tinyfed::testing {
namespace {

std::vector<uint8_t> Frame(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> out(TINYFED_FRAME_ENCODED_MAX(payload.size()));
  size_t len = 0;
  EXPECT_EQ(tinyfed_frame_encode(type, payload.data(), payload.size(), out.data(), out.size(),
                                 &len),
            TINYFED_OK);
  out.resize(len);
  return out;
}

std::vector<uint8_t> Random(size_t n, std::mt19937& rng, bool with_zeros = true) {
  std::vector<uint8_t> v(n);
  for (auto& b : v) {
    b = static_cast<uint8_t>(rng());
    if (!with_zeros && b == 0) b = 1;
  }
  return v;
}

struct Received {
  uint8_t type;
  std::vector<uint8_t> payload;
};

// Feeds `stream` through a decoder; returns the good frames and counts the
// statuses of dropped ones.
struct Decoded {
  std::vector<Received> frames;
  int malformed = 0, checksum = 0, too_large = 0;
};

Decoded Decode(const std::vector<uint8_t>& stream, size_t max_payload = 1024) {
  std::vector<uint8_t> buffer(TINYFED_FRAME_DECODER_BUFFER(max_payload));
  tinyfed_frame_decoder_t d;
  EXPECT_EQ(tinyfed_frame_decoder_init(&d, buffer.data(), buffer.size()), TINYFED_OK);
  Decoded out;
  for (uint8_t byte : stream) {
    int ready = 0;
    tinyfed_frame_t frame;
    switch (tinyfed_frame_decoder_push(&d, byte, &ready, &frame)) {
      case TINYFED_OK:
        if (ready) out.frames.push_back({frame.type, {frame.payload, frame.payload + frame.length}});
        break;
      case TINYFED_ERR_MALFORMED: ++out.malformed; break;
      case TINYFED_ERR_CHECKSUM: ++out.checksum; break;
      case TINYFED_ERR_MESSAGE_TOO_LARGE: ++out.too_large; break;
      default: ADD_FAILURE() << "unexpected status"; break;
    }
  }
  return out;
}

TEST(LinkFraming, RoundTripsEveryPayloadShape) {
  std::mt19937 rng(1);
  // Sizes around COBS's 254-byte blocks, all-zero and zero-free payloads.
  for (size_t n : {0u, 1u, 2u, 246u, 247u, 248u, 253u, 254u, 255u, 508u, 741u, 1024u}) {
    for (int kind = 0; kind < 3; ++kind) {
      std::vector<uint8_t> payload =
          kind == 0 ? Random(n, rng) : kind == 1 ? std::vector<uint8_t>(n, 0) : Random(n, rng, false);
      const std::vector<uint8_t> wire = Frame(TINYFED_FRAME_UPDATE, payload);
      ASSERT_LE(wire.size(), TINYFED_FRAME_ENCODED_MAX(n));
      EXPECT_EQ(wire.back(), 0u);
      EXPECT_EQ(std::count(wire.begin(), wire.end(), 0), 1) << "0x00 only as the delimiter";
      const Decoded d = Decode(wire);
      ASSERT_EQ(d.frames.size(), 1u) << n << "/" << kind;
      EXPECT_EQ(d.frames[0].type, TINYFED_FRAME_UPDATE);
      EXPECT_EQ(d.frames[0].payload, payload);
    }
  }
}

TEST(LinkFraming, ZeroAfterAFullCobsBlockSurvives) {
  // A zero right after 254 non-zero bytes ends a full COBS block (code
  // 0xFF, no implied zero) and must travel as a block of its own; an
  // encoder that took it as the full block's implied zero lost it and the
  // frame failed its CRC. Here every block of the unstuffed frame (3
  // non-zero header bytes, as 700 = 0x02BC, then the payload) is exactly
  // that, and a full block ends the payload, too.
  for (size_t n : {700u, 762u}) {
    std::vector<uint8_t> payload(n);
    for (size_t i = 0; i < n; ++i) {
      payload[i] = (i + 3u) % 255u == 254u ? 0u : static_cast<uint8_t>(1u + i % 200u);
    }
    const Decoded d = Decode(Frame(TINYFED_FRAME_UPDATE, payload));
    ASSERT_EQ(d.frames.size(), 1u) << n;
    EXPECT_EQ(d.frames[0].payload, payload) << n;
  }
}

TEST(LinkFraming, EncodeRejectsBadArguments) {
  uint8_t out[64];
  size_t len = 0;
  const uint8_t payload[100] = {};
  EXPECT_EQ(tinyfed_frame_encode(0, payload, 4, out, sizeof out, &len), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_frame_encode(1, nullptr, 4, out, sizeof out, &len), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_frame_encode(1, payload, 70000, out, sizeof out, &len), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_frame_encode(1, payload, 100, out, sizeof out, &len),
            TINYFED_ERR_BUFFER_TOO_SMALL);
}

TEST(LinkFraming, CorruptedFrameIsDroppedAndTheNextOneArrives) {
  std::mt19937 rng(2);
  const auto a = Random(300, rng), b = Random(50, rng);
  for (size_t pos = 0; pos + 1 < Frame(1, a).size(); pos += 7) {
    std::vector<uint8_t> first = Frame(1, a);
    first[pos] ^= 0x10;  // any single flipped byte of the body
    if (first[pos] == 0) first[pos] = 0x33;  // a new delimiter would split it: tested below
    std::vector<uint8_t> stream = first;
    const auto second = Frame(2, b);
    stream.insert(stream.end(), second.begin(), second.end());
    const Decoded d = Decode(stream);
    ASSERT_EQ(d.frames.size(), 1u) << "corruption at " << pos;
    EXPECT_EQ(d.frames[0].type, 2);
    EXPECT_EQ(d.frames[0].payload, b);
    EXPECT_EQ(d.malformed + d.checksum, 1) << pos;
  }
}

TEST(LinkFraming, TruncatedFrameIsDroppedAndTheLinkRecovers) {
  std::mt19937 rng(3);
  const auto a = Random(400, rng), b = Random(30, rng);
  const auto first = Frame(1, a);
  for (size_t cut = 1; cut < first.size() - 1; cut += 13) {
    // The sender died mid-frame and restarted with a delimiter first.
    std::vector<uint8_t> stream(first.begin(), first.begin() + static_cast<long>(cut));
    stream.push_back(0);
    const auto second = Frame(3, b);
    stream.insert(stream.end(), second.begin(), second.end());
    const Decoded d = Decode(stream);
    ASSERT_EQ(d.frames.size(), 1u) << cut;
    EXPECT_EQ(d.frames[0].payload, b);
    EXPECT_EQ(d.malformed + d.checksum, 1) << cut;
  }
}

TEST(LinkFraming, OversizedFrameIsDroppedWithoutOverflow) {
  std::mt19937 rng(4);
  const auto big = Random(2000, rng), small = Random(10, rng);
  std::vector<uint8_t> stream = Frame(1, big);
  const auto next = Frame(4, small);
  stream.insert(stream.end(), next.begin(), next.end());
  const Decoded d = Decode(stream, /*max_payload=*/1024);
  EXPECT_EQ(d.too_large, 1);
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.frames[0].payload, small);
}

TEST(LinkFraming, NoiseBetweenFramesCostsNoGoodFrame) {
  // Frames separated by bursts of line noise that end with a delimiter (as
  // a sender resynchronising would send): every frame arrives, the noise is
  // rejected as malformed or checksum-failed pseudo-frames, never accepted.
  std::mt19937 rng(5);
  std::vector<uint8_t> stream;
  std::vector<std::vector<uint8_t>> sent;
  for (int i = 0; i < 200; ++i) {
    auto noise = Random(rng() % 40, rng);
    noise.push_back(0);
    stream.insert(stream.end(), noise.begin(), noise.end());
    sent.push_back(Random(rng() % 700, rng));
    const auto f = Frame(static_cast<uint8_t>(1 + i % 5), sent.back());
    stream.insert(stream.end(), f.begin(), f.end());
  }
  const Decoded d = Decode(stream);
  ASSERT_EQ(d.frames.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) EXPECT_EQ(d.frames[i].payload, sent[i]) << i;
}

TEST(LinkFraming, RandomDamageNeverYieldsAWrongFrame) {
  // Flip, drop and insert bytes anywhere in a long stream: whatever the
  // decoder accepts must be a frame that was sent, intact (a CRC-32 miss
  // has probability 2^-32 per damaged frame).
  std::mt19937 rng(6);
  std::vector<std::vector<uint8_t>> sent;
  std::vector<uint8_t> stream;
  for (int i = 0; i < 500; ++i) {
    sent.push_back(Random(1 + rng() % 300, rng));
    const auto f = Frame(3, sent.back());
    stream.insert(stream.end(), f.begin(), f.end());
  }
  for (int e = 0; e < 300; ++e) {
    const size_t pos = rng() % stream.size();
    switch (rng() % 3) {
      case 0: stream[pos] = static_cast<uint8_t>(rng()); break;
      case 1: stream.erase(stream.begin() + static_cast<long>(pos)); break;
      default: stream.insert(stream.begin() + static_cast<long>(pos), static_cast<uint8_t>(rng()));
    }
  }
  const Decoded d = Decode(stream);
  size_t matched = 0;
  size_t next = 0;
  for (const Received& r : d.frames) {
    while (next < sent.size() && sent[next] != r.payload) ++next;
    ASSERT_LT(next, sent.size()) << "accepted a frame that was never sent";
    ++matched;
    ++next;
  }
  EXPECT_GT(matched, 100u) << "most undamaged frames still arrive";
  EXPECT_GT(d.malformed + d.checksum + d.too_large, 0);
}

TEST(LinkFraming, DecoderRejectsBadArguments) {
  tinyfed_frame_decoder_t d;
  uint8_t buf[4];
  EXPECT_EQ(tinyfed_frame_decoder_init(&d, buf, sizeof buf), TINYFED_ERR_ARGUMENT);
  EXPECT_EQ(tinyfed_frame_decoder_init(nullptr, buf, sizeof buf), TINYFED_ERR_ARGUMENT);
  uint8_t ok_buf[TINYFED_FRAME_DECODER_BUFFER(0u)];
  ASSERT_EQ(tinyfed_frame_decoder_init(&d, ok_buf, sizeof ok_buf), TINYFED_OK);
  int ready = 0;
  EXPECT_EQ(tinyfed_frame_decoder_push(&d, 1, nullptr, nullptr), TINYFED_ERR_ARGUMENT);
  tinyfed_frame_t frame;
  EXPECT_EQ(tinyfed_frame_decoder_push(&d, 0, &ready, &frame), TINYFED_OK);
  EXPECT_EQ(ready, 0) << "an idle delimiter is not a frame";
}

}  // namespace
}  // namespace tinyfed::testing

namespace tinyfed::testing {
namespace {

TEST(LinkFraming, StreamingWriteProducesTheSameBytesInSmallPieces) {
  std::mt19937 rng(7);
  for (size_t n : {0u, 1u, 247u, 254u, 500u, 741u}) {
    const auto payload = Random(n, rng);
    const auto expected = Frame(TINYFED_FRAME_UPDATE, payload);
    struct Collect {
      std::vector<uint8_t> bytes;
      size_t largest = 0;
    } c;
    auto sink = [](void* user, const uint8_t* bytes, size_t len) -> int {
      auto* col = static_cast<Collect*>(user);
      col->bytes.insert(col->bytes.end(), bytes, bytes + len);
      col->largest = std::max(col->largest, len);
      return 1;
    };
    ASSERT_EQ(tinyfed_frame_write(TINYFED_FRAME_UPDATE, payload.data(), n, sink, &c), TINYFED_OK);
    EXPECT_EQ(c.bytes, expected) << n;
    EXPECT_LE(c.largest, 255u);
  }
  // A sink that fails stops the write with an error.
  auto failing = [](void*, const uint8_t*, size_t) -> int { return 0; };
  const uint8_t one = 1;
  EXPECT_EQ(tinyfed_frame_write(TINYFED_FRAME_UPDATE, &one, 1, failing, nullptr),
            TINYFED_ERR_BUFFER_TOO_SMALL);
  EXPECT_EQ(tinyfed_frame_write(TINYFED_FRAME_UPDATE, &one, 1, nullptr, nullptr),
            TINYFED_ERR_ARGUMENT);
}

}  // namespace
}  // namespace tinyfed::testing
