/* Link framing: COBS-stuffed frames with a type, a length and a CRC-32. */
#include "tinyfed/link.h"

#include "tinyfed_common/crc32.h"

/* ---- encoding ----------------------------------------------------------- */

/* COBS without a frame buffer: the unstuffed frame (header, payload, CRC)
 * is fed a byte at a time into one block of at most 254 non-zero bytes
 * behind its code byte, and each finished block goes to the sink. */
typedef struct cobs_writer {
  tinyfed_frame_sink_t sink;
  void *user;
  size_t fill; /* bytes in block[], the code byte included */
  int ok;      /* every sink call so far succeeded */
  uint8_t block[255];
} cobs_writer_t;

/* A non-zero byte joins the block; a zero (implied by the code byte), or
 * the 254th non-zero byte (code 0xFF, nothing implied), ends it. */
static void cobs_put(cobs_writer_t *w, const uint8_t *bytes, size_t length) {
  for (; length > 0u; --length, ++bytes) {
    if (*bytes != 0u) {
      w->block[w->fill++] = *bytes;
      if (w->fill < 255u) continue;
    }
    w->block[0] = (uint8_t)w->fill;
    w->ok = w->ok && w->sink(w->user, w->block, w->fill);
    w->fill = 1u;
  }
}

tinyfed_status_t tinyfed_frame_write(uint8_t type, const uint8_t *payload, size_t length,
                                     tinyfed_frame_sink_t sink, void *user) {
  if (sink == NULL || type == 0u || length > TINYFED_FRAME_MAX_PAYLOAD ||
      (payload == NULL && length != 0u)) {
    return TINYFED_ERR_ARGUMENT;
  }
  uint8_t head[TINYFED_FRAME_HEADER_SIZE], crc[TINYFED_FRAME_CRC_SIZE];
  head[0] = type;
  head[1] = (uint8_t)(length & 0xFFu);
  head[2] = (uint8_t)(length >> 8);
  uint32_t sum = tinyfed_crc32_update(TINYFED_CRC32_INIT, head, sizeof head);
  sum = tinyfed_crc32_update(sum, payload, length);
  size_t k;
  for (k = 0; k < TINYFED_FRAME_CRC_SIZE; ++k) crc[k] = (uint8_t)(sum >> (8u * k));

  cobs_writer_t w;
  w.sink = sink;
  w.user = user;
  w.fill = 1u;
  w.ok = 1;
  cobs_put(&w, head, sizeof head);
  cobs_put(&w, payload, length);
  cobs_put(&w, crc, sizeof crc);
  /* The last block (empty after a full one, or after a final zero): the
   * decoder drops its implied zero. The delimiter follows in the same
   * piece; fill is below 255 here, so it fits. */
  w.block[0] = (uint8_t)w.fill;
  w.block[w.fill] = 0u;
  w.ok = w.ok && sink(user, w.block, w.fill + 1u);
  return w.ok ? TINYFED_OK : TINYFED_ERR_BUFFER_TOO_SMALL;
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

/* Checks the frame the delimiter ends; its length, header and CRC decide. */
static tinyfed_status_t finish_frame(tinyfed_frame_decoder_t *d, int *ready,
                                     tinyfed_frame_t *frame) {
  if (d->code != 0u) return drop(d, TINYFED_ERR_MALFORMED, 1); /* block cut short */
  /* The last block's implicit zero is not data (a full block has none). */
  if (!d->block_full && d->length != 0u) --d->length;
  if (d->length < TINYFED_FRAME_HEADER_SIZE + TINYFED_FRAME_CRC_SIZE) {
    return drop(d, TINYFED_ERR_MALFORMED, 1);
  }
  const uint8_t *b = d->buffer;
  const size_t payload = (size_t)b[1] | ((size_t)b[2] << 8);
  if (payload + TINYFED_FRAME_HEADER_SIZE + TINYFED_FRAME_CRC_SIZE != d->length || b[0] == 0u) {
    return drop(d, TINYFED_ERR_MALFORMED, 1);
  }
  const size_t body = d->length - TINYFED_FRAME_CRC_SIZE;
  uint32_t sent = 0u;
  size_t k;
  for (k = TINYFED_FRAME_CRC_SIZE; k > 0u; --k) sent = (sent << 8) | b[body + k - 1u];
  if (tinyfed_crc32_update(TINYFED_CRC32_INIT, b, body) != sent) {
    return drop(d, TINYFED_ERR_CHECKSUM, 1);
  }
  frame->type = b[0];
  frame->payload = b + TINYFED_FRAME_HEADER_SIZE;
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
  if (d->code == 0u) { /* a block's code byte: the block's size, itself included */
    d->block_full = (uint8_t)(byte == 0xFFu);
    d->code = byte;
  } else if (!append(d, byte)) {
    return drop(d, TINYFED_ERR_MESSAGE_TOO_LARGE, 0);
  }
  /* At a block's end comes its implicit zero, unless it was full. */
  if (--d->code == 0u && !d->block_full && !append(d, 0u)) {
    return drop(d, TINYFED_ERR_MESSAGE_TOO_LARGE, 0);
  }
  return TINYFED_OK;
}
