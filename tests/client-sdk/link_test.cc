// Link framing: frames survive the trip byte by byte, frames of every type
// share a stream and keep their type, and corrupted, truncated, oversized
// and noise-interleaved streams, and frames whose type or length byte was
// damaged, are rejected frame by frame while the link recovers at the next
// delimiter.
#include "tinyfed/link.h"

#include <gtest/gtest.h>

#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "tinyfed_common/host_numerics.h"

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

// The unstuffed frame as link.h documents it, built here without the SDK:
// type, length (little-endian), payload, then the CRC-32 of all of those
// (the host's slicing-by-8 CRC, not the device's nibble table).
std::vector<uint8_t> RawFrame(uint8_t type, const std::vector<uint8_t>& payload) {
  std::vector<uint8_t> raw = {type, static_cast<uint8_t>(payload.size() & 0xFF),
                              static_cast<uint8_t>(payload.size() >> 8)};
  raw.insert(raw.end(), payload.begin(), payload.end());
  const uint32_t crc = tinyfed::Crc32Update(0, raw.data(), raw.size());
  for (int k = 0; k < 4; ++k) raw.push_back(static_cast<uint8_t>(crc >> (8 * k)));
  return raw;
}

// Textbook COBS (Cheshire and Baker): blocks of up to 254 non-zero bytes
// behind a code byte giving the distance to the next zero, the trailing
// implicit zero dropped; then the 0x00 delimiter.
std::vector<uint8_t> Stuff(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> out = {0};
  size_t code_at = 0;
  uint8_t code = 1;
  for (uint8_t b : raw) {
    if (b != 0) {
      out.push_back(b);
      ++code;
    }
    if (b == 0 || code == 0xFF) {
      out[code_at] = code;
      code_at = out.size();
      out.push_back(0);
      code = 1;
    }
  }
  out[code_at] = code;
  out.push_back(0);
  return out;
}

// The inverse of Stuff for one well-formed frame, delimiter included.
std::vector<uint8_t> Unstuff(const std::vector<uint8_t>& wire) {
  std::vector<uint8_t> raw;
  size_t i = 0;
  while (i + 1 < wire.size()) {  // wire.back() is the delimiter
    const uint8_t code = wire[i++];
    for (uint8_t k = 1; k < code; ++k) raw.push_back(wire[i++]);
    if (code != 0xFF && i + 1 < wire.size()) raw.push_back(0);
  }
  return raw;
}

// Payload sizes whose length field has a zero high byte (the common
// case), a non-zero one, and an empty payload.
const size_t kPayloadSizes[] = {0, 1, 37, 255, 256, 300, 741};

TEST(LinkFraming, FramesOfEveryTypeShareAStreamAndKeepTheirType) {
  // The five protocol types and other non-zero type bytes (the framing
  // carries any), over the same payloads, so a frame can only be told from
  // its neighbours by its type; all in one stream, the types in another
  // order for each payload.
  std::mt19937 rng(11);
  const uint8_t types[] = {TINYFED_FRAME_CHECKIN, TINYFED_FRAME_CHECKIN_RESPONSE,
                           TINYFED_FRAME_UPDATE,  TINYFED_FRAME_ACK,
                           TINYFED_FRAME_ERROR,   6,
                           0x7F,                  0xFF};
  std::vector<Received> sent;
  std::vector<uint8_t> stream;
  for (size_t n : kPayloadSizes) {
    const std::vector<uint8_t> payload = Random(n, rng);
    for (size_t i = 0; i < std::size(types); ++i) {
      const uint8_t type = types[(i * 3 + n) % std::size(types)];  // 3 is coprime to 8
      const std::vector<uint8_t> wire = Frame(type, payload);
      // The SDK writes exactly the documented layout: type and length are
      // under the CRC.
      ASSERT_EQ(wire, Stuff(RawFrame(type, payload))) << "type " << int{type} << ", " << n;
      stream.insert(stream.end(), wire.begin(), wire.end());
      sent.push_back({type, payload});
    }
  }
  const Decoded d = Decode(stream);
  EXPECT_EQ(d.malformed + d.checksum + d.too_large, 0);
  ASSERT_EQ(d.frames.size(), sent.size());
  for (size_t i = 0; i < sent.size(); ++i) {
    EXPECT_EQ(int{d.frames[i].type}, int{sent[i].type}) << "frame " << i;
    EXPECT_EQ(d.frames[i].payload, sent[i].payload) << "frame " << i;
  }
}

// Replaces byte `at` of a frame the SDK encoded, before stuffing, with
// every other value in turn (the CRC left as sent, as damage on the line
// leaves it), stuffs it again and sends it ahead of a good frame: the
// damaged frame must be dropped as MALFORMED or CHECKSUM, never delivered,
// and the good one must arrive. The SDK's own frame, not RawFrame: a CRC
// that did not cover the header would then let the damage through.
void ExpectEveryValueOfByteIsRejected(size_t at, const char* what) {
  std::mt19937 rng(12);
  const std::vector<uint8_t> next_payload = Random(20, rng);
  const std::vector<uint8_t> next = Frame(TINYFED_FRAME_ACK, next_payload);
  for (size_t n : kPayloadSizes) {
    const std::vector<uint8_t> payload = Random(n, rng);
    const std::vector<uint8_t> wire = Frame(TINYFED_FRAME_UPDATE, payload);
    const std::vector<uint8_t> good = Unstuff(wire);
    ASSERT_EQ(Stuff(good), wire) << "the test's COBS disagrees with the SDK's";
    ASSERT_EQ(good.size(), n + 7);
    int checksum = 0, malformed = 0;
    for (int value = 0; value < 256; ++value) {
      if (value == good[at]) continue;
      std::vector<uint8_t> raw = good;
      raw[at] = static_cast<uint8_t>(value);
      std::vector<uint8_t> stream = Stuff(raw);
      stream.insert(stream.end(), next.begin(), next.end());
      const Decoded d = Decode(stream, 1024);
      for (const Received& r : d.frames) {
        ASSERT_EQ(int{r.type}, TINYFED_FRAME_ACK)
            << what << " " << int{good[at]} << " -> " << value << ", payload " << n
            << ": the damaged frame was delivered with type " << int{r.type} << " and length "
            << r.payload.size();
      }
      ASSERT_EQ(d.frames.size(), 1u) << what << " -> " << value << ", payload " << n;
      EXPECT_EQ(d.frames[0].payload, next_payload);
      ASSERT_EQ(d.malformed + d.checksum, 1) << what << " -> " << value << ", payload " << n;
      EXPECT_EQ(d.too_large, 0);
      checksum += d.checksum;
      malformed += d.malformed;
    }
    EXPECT_EQ(checksum + malformed, 255) << what << ", payload " << n;
  }
}

TEST(LinkFraming, DamagedTypeByteDropsTheFrame) {
  // Any other type, 0 included (MALFORMED), is caught: the CRC covers it.
  ExpectEveryValueOfByteIsRejected(0, "type");
}

TEST(LinkFraming, DamagedLengthBytesDropTheFrame) {
  // A length that disagrees with the bytes between the delimiters is
  // MALFORMED before the CRC is even checked; the CRC covers the length
  // too, so neither check alone lets a wrong length through.
  ExpectEveryValueOfByteIsRejected(1, "length low byte");
  ExpectEveryValueOfByteIsRejected(2, "length high byte");
}

}  // namespace
}  // namespace tinyfed::testing
