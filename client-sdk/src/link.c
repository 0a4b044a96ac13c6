/* Link framing: COBS-stuffed frames with a type, a length and a CRC-32. */
#include "tinyfed/link.h"

#include "tinyfed_common/crc32.h"

/* ---- encoding ----------------------------------------------------------- */

/* The unstuffed frame is a virtual concatenation of header, payload and
 * CRC; COBS needs each block's length before its bytes, so the encoder
 * looks ahead in place instead of buffering. */
typedef struct frame_source {
  uint8_t head[TINYFED_FRAME_HEADER_SIZE];
  const uint8_t *payload;
  size_t length;
  uint8_t crc[TINYFED_FRAME_CRC_SIZE];
} frame_source_t;

static uint8_t source_byte(const frame_source_t *f, size_t i) {
  if (i < TINYFED_FRAME_HEADER_SIZE) return f->head[i];
  i -= TINYFED_FRAME_HEADER_SIZE;
  if (i < f->length) return f->payload[i];
  return f->crc[i - f->length];
}

static int emit(tinyfed_frame_sink_t sink, void *user, uint8_t *chunk, size_t *fill,
                uint8_t byte) {
  chunk[(*fill)++] = byte;
  if (*fill < 255u) return 1;
  *fill = 0u;
  return sink(user, chunk, 255u);
}

tinyfed_status_t tinyfed_frame_write(uint8_t type, const uint8_t *payload, size_t length,
                                     tinyfed_frame_sink_t sink, void *user) {
  if (sink == NULL || type == 0u || length > TINYFED_FRAME_MAX_PAYLOAD ||
      (payload == NULL && length != 0u)) {
    return TINYFED_ERR_ARGUMENT;
  }
  frame_source_t f;
  f.head[0] = type;
  f.head[1] = (uint8_t)(length & 0xFFu);
  f.head[2] = (uint8_t)(length >> 8);
  f.payload = payload;
  f.length = length;
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT, f.head, sizeof f.head);
  crc = tinyfed_crc32_update(crc, payload, length);
  size_t k;
  for (k = 0; k < TINYFED_FRAME_CRC_SIZE; ++k) f.crc[k] = (uint8_t)(crc >> (8u * k));

  const size_t total = TINYFED_FRAME_HEADER_SIZE + length + TINYFED_FRAME_CRC_SIZE;
  uint8_t chunk[255];
  size_t fill = 0u, i = 0u;
  int ok = 1;
  for (;;) {
    /* A block: up to 254 non-zero bytes, then an implied zero (consumed
     * from the input) unless the block is full or the input has ended. */
    size_t j = i;
    while (j < total && j - i < 254u && source_byte(&f, j) != 0u) ++j;
    ok = ok && emit(sink, user, chunk, &fill, (uint8_t)(j - i + 1u));
    for (k = i; k < j; ++k) ok = ok && emit(sink, user, chunk, &fill, source_byte(&f, k));
    if (j == total) {
      /* A full last block is followed by an empty one, so every frame ends
       * with a block whose implied zero the decoder drops. */
      if (j - i == 254u) ok = ok && emit(sink, user, chunk, &fill, 1u);
      break;
    }
    if (source_byte(&f, j) == 0u) {
      i = j + 1u;
      if (i == total) { /* the last byte was zero: an empty final block */
        ok = ok && emit(sink, user, chunk, &fill, 1u);
        break;
      }
    } else {
      i = j; /* a full block: no implied zero */
    }
  }
  ok = ok && emit(sink, user, chunk, &fill, 0u); /* delimiter */
  if (ok && fill > 0u) ok = sink(user, chunk, fill);
  return ok ? TINYFED_OK : TINYFED_ERR_BUFFER_TOO_SMALL;
}

typedef struct buffer_sink {
  uint8_t *out;
  size_t capacity;
  size_t length;
} buffer_sink_t;

static int write_to_buffer(void *user, const uint8_t *bytes, size_t length) {
  buffer_sink_t *b = (buffer_sink_t *)user;
  if (length > b->capacity - b->length) return 0;
  size_t i;
  for (i = 0; i < length; ++i) b->out[b->length + i] = bytes[i];
  b->length += length;
  return 1;
}

tinyfed_status_t tinyfed_frame_encode(uint8_t type, const uint8_t *payload, size_t length,
                                      uint8_t *out, size_t capacity, size_t *out_len) {
  if (out == NULL || out_len == NULL) return TINYFED_ERR_ARGUMENT;
  buffer_sink_t b = {out, capacity, 0u};
  tinyfed_status_t s = tinyfed_frame_write(type, payload, length, write_to_buffer, &b);
  if (s == TINYFED_OK) *out_len = b.length;
  return s;
}

/* ---- decoding ----------------------------------------------------------- */

tinyfed_status_t tinyfed_frame_decoder_init(tinyfed_frame_decoder_t *d, uint8_t *buffer,
                                            size_t capacity) {
  if (d == NULL || buffer == NULL || capacity < TINYFED_FRAME_DECODER_BUFFER(0u)) {
    return TINYFED_ERR_ARGUMENT;
  }
  d->buffer = buffer;
  d->capacity = capacity;
  d->length = 0u;
  d->code = 0u;
  d->block_full = 0u;
  d->discarding = 0u;
  d->frames_ok = 0u;
  d->frames_dropped = 0u;
  return TINYFED_OK;
}

static void reset(tinyfed_frame_decoder_t *d) {
  d->length = 0u;
  d->code = 0u;
  d->block_full = 0u;
}

/* Drops the frame in progress; the caller's byte decides whether the
 * decoder is already at a delimiter or must skip to the next one. */
static tinyfed_status_t drop(tinyfed_frame_decoder_t *d, tinyfed_status_t why, int at_delimiter) {
  ++d->frames_dropped;
  reset(d);
  d->discarding = (uint8_t)(at_delimiter ? 0u : 1u);
  return why;
}

static int append(tinyfed_frame_decoder_t *d, uint8_t byte) {
  if (d->length >= d->capacity) return 0;
  d->buffer[d->length++] = byte;
  return 1;
}

static tinyfed_status_t finish_frame(tinyfed_frame_decoder_t *d, int *ready,
                                     tinyfed_frame_t *frame) {
  if (d->code != 0u) return drop(d, TINYFED_ERR_MALFORMED, 1); /* block cut short */
  if (!d->block_full) {
    if (d->length == 0u) return drop(d, TINYFED_ERR_MALFORMED, 1);
    --d->length; /* the last block's implicit zero is not data */
  }
  if (d->length < TINYFED_FRAME_HEADER_SIZE + TINYFED_FRAME_CRC_SIZE) {
    return drop(d, TINYFED_ERR_MALFORMED, 1);
  }
  const size_t payload = (size_t)d->buffer[1] | ((size_t)d->buffer[2] << 8);
  if (payload + TINYFED_FRAME_HEADER_SIZE + TINYFED_FRAME_CRC_SIZE != d->length ||
      d->buffer[0] == 0u) {
    return drop(d, TINYFED_ERR_MALFORMED, 1);
  }
  const size_t body = d->length - TINYFED_FRAME_CRC_SIZE;
  const uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT, d->buffer, body);
  const uint32_t sent = (uint32_t)d->buffer[body] | ((uint32_t)d->buffer[body + 1u] << 8) |
                        ((uint32_t)d->buffer[body + 2u] << 16) |
                        ((uint32_t)d->buffer[body + 3u] << 24);
  if (crc != sent) return drop(d, TINYFED_ERR_CHECKSUM, 1);
  frame->type = d->buffer[0];
  frame->payload = d->buffer + TINYFED_FRAME_HEADER_SIZE;
  frame->length = payload;
  *ready = 1;
  ++d->frames_ok;
  reset(d);
  return TINYFED_OK;
}

tinyfed_status_t tinyfed_frame_decoder_push(tinyfed_frame_decoder_t *d, uint8_t byte, int *ready,
                                            tinyfed_frame_t *frame) {
  if (d == NULL || ready == NULL || frame == NULL || d->buffer == NULL) {
    return TINYFED_ERR_ARGUMENT;
  }
  *ready = 0;
  if (d->discarding) {
    if (byte == 0u) {
      d->discarding = 0u;
      reset(d);
    }
    return TINYFED_OK;
  }
  if (byte == 0u) {
    if (d->length == 0u && d->code == 0u && !d->block_full) return TINYFED_OK; /* idle line */
    return finish_frame(d, ready, frame);
  }
  if (d->code == 0u) { /* a block's code byte */
    d->block_full = (uint8_t)(byte == 0xFFu);
    d->code = (uint8_t)(byte - 1u);
    if (d->code == 0u && !d->block_full && !append(d, 0u)) {
      return drop(d, TINYFED_ERR_MESSAGE_TOO_LARGE, 0);
    }
    return TINYFED_OK;
  }
  if (!append(d, byte)) return drop(d, TINYFED_ERR_MESSAGE_TOO_LARGE, 0);
  if (--d->code == 0u && !d->block_full && !append(d, 0u)) {
    return drop(d, TINYFED_ERR_MESSAGE_TOO_LARGE, 0);
  }
  return TINYFED_OK;
}
