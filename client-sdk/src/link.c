/* Link framing: COBS-stuffed frames with a type, a length and a CRC-32. */
#include "tinyfed/link.h"

#include "tinyfed_common/crc32.h"

/* ---- encoding ----------------------------------------------------------- */

typedef struct cobs_writer {
  uint8_t *out;
  size_t capacity;
  size_t length;     /* bytes written, including pending code slots */
  size_t code_at;    /* index of the current block's code byte */
  uint8_t code;      /* 1 + data bytes in the current block */
  int overflow;
} cobs_writer_t;

static void cobs_emit(cobs_writer_t *w, uint8_t byte) {
  if (w->length >= w->capacity) {
    w->overflow = 1;
    return;
  }
  w->out[w->length++] = byte;
}

static void cobs_begin_block(cobs_writer_t *w) {
  w->code_at = w->length;
  w->code = 1;
  cobs_emit(w, 0); /* placeholder for the block's code */
}

static void cobs_end_block(cobs_writer_t *w) {
  if (!w->overflow) w->out[w->code_at] = w->code;
}

static void cobs_put(cobs_writer_t *w, uint8_t byte) {
  if (byte == 0u) {
    cobs_end_block(w);
    cobs_begin_block(w);
    return;
  }
  cobs_emit(w, byte);
  if (++w->code == 0xFFu) { /* a full block carries no implicit zero */
    cobs_end_block(w);
    cobs_begin_block(w);
  }
}

tinyfed_status_t tinyfed_frame_encode(uint8_t type, const uint8_t *payload, size_t length,
                                      uint8_t *out, size_t capacity, size_t *out_len) {
  if (out == NULL || out_len == NULL || type == 0u || length > TINYFED_FRAME_MAX_PAYLOAD ||
      (payload == NULL && length != 0u)) {
    return TINYFED_ERR_ARGUMENT;
  }
  uint8_t header[TINYFED_FRAME_HEADER_SIZE];
  header[0] = type;
  header[1] = (uint8_t)(length & 0xFFu);
  header[2] = (uint8_t)(length >> 8);
  uint32_t crc = tinyfed_crc32_update(TINYFED_CRC32_INIT, header, sizeof header);
  crc = tinyfed_crc32_update(crc, payload, length);

  cobs_writer_t w = {out, capacity, 0u, 0u, 1u, 0};
  cobs_begin_block(&w);
  size_t i;
  for (i = 0; i < sizeof header; ++i) cobs_put(&w, header[i]);
  for (i = 0; i < length; ++i) cobs_put(&w, payload[i]);
  for (i = 0; i < TINYFED_FRAME_CRC_SIZE; ++i) cobs_put(&w, (uint8_t)(crc >> (8u * i)));
  cobs_end_block(&w);
  cobs_emit(&w, 0u); /* delimiter */
  if (w.overflow) return TINYFED_ERR_BUFFER_TOO_SMALL;
  *out_len = w.length;
  return TINYFED_OK;
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
