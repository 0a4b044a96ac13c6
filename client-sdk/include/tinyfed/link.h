/* Link framing: carrying the SDK's encoded messages over a byte stream
 * (UART, TCP) that may lose, corrupt or inject bytes.
 *
 * A frame on the wire is COBS(type, length, payload, CRC-32) followed by a
 * 0x00 delimiter:
 *   - type: 1 byte (tinyfed_frame_type_t)
 *   - length: 2 bytes, little-endian, the payload's size
 *   - payload: `length` bytes (an encoded protobuf message)
 *   - CRC-32 (tinyfed_common/crc32.h), 4 bytes little-endian, over type,
 *     length and payload
 * Consistent Overhead Byte Stuffing removes every 0x00 from the frame body,
 * so 0x00 only ever marks a frame's end: after noise, a truncated frame or
 * a lost byte, the decoder is back in step at the next 0x00 and loses at
 * most the frames the damage touched.
 *
 * No heap, no globals: encoders write to caller buffers, a decoder works in
 * a caller buffer. A decoder requires external synchronization.
 */
#ifndef TINYFED_LINK_H_
#define TINYFED_LINK_H_

#include <stddef.h>
#include <stdint.h>

#include "tinyfed/tinyfed.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum tinyfed_frame_type {
  TINYFED_FRAME_CHECKIN = 1,           /* device -> server: CheckInRequest */
  TINYFED_FRAME_CHECKIN_RESPONSE = 2,  /* server -> device: CheckInResponse */
  TINYFED_FRAME_UPDATE = 3,            /* device -> server: Update */
  TINYFED_FRAME_ACK = 4,               /* server -> device: UpdateAck */
  TINYFED_FRAME_ERROR = 5              /* server -> device: status text */
} tinyfed_frame_type_t;

/* Header (type, length) and CRC around the payload. */
#define TINYFED_FRAME_HEADER_SIZE 3u
#define TINYFED_FRAME_CRC_SIZE 4u
/* Largest payload a frame can carry (the length field is 16 bits). */
#define TINYFED_FRAME_MAX_PAYLOAD 65535u
/* Bytes on the wire for a payload of n bytes, at most: the unencoded frame
 * (n + 7), one COBS code byte per 254 bytes plus one, and the delimiter. */
#define TINYFED_FRAME_ENCODED_MAX(n) \
  ((n) + 7u + ((n) + 7u) / 254u + 1u + 1u)
/* Decoder buffer for payloads up to n bytes. */
#define TINYFED_FRAME_DECODER_BUFFER(n) ((n) + 8u) /* + 1 transient COBS zero */

/* Encodes one frame into out[0..capacity) and sets *out_len, delimiter
 * included. Errors: ARGUMENT (NULL, type 0, length > 65535),
 * BUFFER_TOO_SMALL. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_frame_encode(uint8_t type, const uint8_t *payload,
                                                        size_t length, uint8_t *out,
                                                        size_t capacity, size_t *out_len);

/* Receives encoded frame bytes in order; returns 0 to abort. */
typedef int (*tinyfed_frame_sink_t)(void *user, const uint8_t *bytes, size_t length);

/* Encodes one frame straight to `sink` (for example a UART write), without
 * an output buffer: the same bytes tinyfed_frame_encode() would produce,
 * in pieces of at most 255 bytes. Errors: ARGUMENT (as
 * tinyfed_frame_encode), BUFFER_TOO_SMALL when the sink returns 0. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_frame_write(uint8_t type, const uint8_t *payload,
                                                       size_t length, tinyfed_frame_sink_t sink,
                                                       void *user);

/* A byte-at-a-time frame decoder. Fields are private. */
typedef struct tinyfed_frame_decoder {
  uint8_t *buffer;     /* decoded frame bytes (header, payload, CRC) */
  size_t capacity;
  size_t length;       /* decoded bytes so far */
  uint8_t code;        /* bytes left in the current COBS block */
  uint8_t block_full;  /* the current block was 255: no implicit zero */
  uint8_t discarding;  /* skipping to the next delimiter after an error */
  uint32_t frames_ok;
  uint32_t frames_dropped;
} tinyfed_frame_decoder_t;

/* A decoded frame: points into the decoder's buffer, valid until the next
 * call to tinyfed_frame_decoder_push(). */
typedef struct tinyfed_frame {
  uint8_t type;
  const uint8_t *payload;
  size_t length;
} tinyfed_frame_t;

/* `buffer` must hold TINYFED_FRAME_DECODER_BUFFER(max payload) bytes and
 * outlive the decoder. Errors: ARGUMENT. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_frame_decoder_init(tinyfed_frame_decoder_t *decoder,
                                                              uint8_t *buffer, size_t capacity);

/* Feeds one received byte. Returns TINYFED_OK and sets *ready to 1 with
 * *frame filled when the byte completed a valid frame, TINYFED_OK with
 * *ready = 0 while a frame is in progress, or the reason a frame was
 * dropped when the byte ended a bad one: MALFORMED (bad stuffing, a header
 * or length that does not fit), CHECKSUM (CRC mismatch),
 * MESSAGE_TOO_LARGE (longer than the buffer). After an error the decoder
 * is already waiting for the next frame. Errors: ARGUMENT. */
TINYFED_NODISCARD tinyfed_status_t tinyfed_frame_decoder_push(tinyfed_frame_decoder_t *decoder,
                                                              uint8_t byte, int *ready,
                                                              tinyfed_frame_t *frame);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_LINK_H_ */
