/* The device's end of the framed UART link, shared by the reference
 * firmware (uart-device, serving-device): one frame out, the server's next
 * frame back within an answer timeout, through the port's link functions.
 * Busy-waits on tinyfed_port_millis(); no heap, no floating point.
 *
 * The caller owns every buffer and the link struct, which must outlive
 * all calls on it: frame_out holds one encoded outgoing frame
 * (TINYFED_FRAME_ENCODED_MAX of the largest payload it sends), frame_in is
 * the decoder's buffer (TINYFED_FRAME_DECODER_BUFFER of the largest payload
 * it receives). Single-threaded. */
#ifndef TINYFED_EXAMPLES_COMMON_DEVICE_LINK_H_
#define TINYFED_EXAMPLES_COMMON_DEVICE_LINK_H_

#include <stddef.h>
#include <stdint.h>

#include "tinyfed/link.h"

/* How long a device waits for the server's answer to one frame: the bridge
 * relays it over gRPC, well within this on a loopback link. */
#define DEVICE_LINK_ANSWER_TIMEOUT_MS 10000u

typedef struct {
  uint8_t *frame_out;
  size_t frame_out_size;
  tinyfed_frame_decoder_t decoder;
} device_link_t;

/* Prepares *link over the caller's buffers; TINYFED_OK, or the decoder's
 * status when frame_in cannot hold a frame. */
TINYFED_NODISCARD tinyfed_status_t device_link_init(device_link_t *link, uint8_t *frame_out,
                                                    size_t frame_out_size, uint8_t *frame_in,
                                                    size_t frame_in_size);

/* Sends one frame of `type` carrying payload[0..length) and waits for the
 * next frame from the server; 1 with *reply filled (its payload lies in
 * frame_in until the next exchange), 0 when the frame does not fit
 * frame_out or no answer came within DEVICE_LINK_ANSWER_TIMEOUT_MS. */
int device_link_exchange(device_link_t *link, uint8_t type, const uint8_t *payload, size_t length,
                         tinyfed_frame_t *reply);

/* Logs an error frame's text ("server error: " and at most its first 100
 * bytes, cut to line_size) through tinyfed_port_log, written into the
 * caller's line[0..line_size). REQUIRES: line_size > 14. */
void device_link_report_error(const tinyfed_frame_t *reply, char *line, size_t line_size);

/* Busy-waits ms milliseconds of tinyfed_port_millis(). */
void device_link_wait_ms(uint32_t ms);

/* After a retry answer: logs "<what>; checking in again in N ms" (N the
 * server's retry_after_ms, written into line[0..line_size)) and waits N ms,
 * but at most DEVICE_LINK_RETRY_WAIT_MAX_MS, so that a long retry time
 * cannot outlast the run that watches the example. */
#define DEVICE_LINK_RETRY_WAIT_MAX_MS 5000u
void device_link_wait_retry(const char *what, uint32_t retry_after_ms, char *line,
                            size_t line_size);

#endif  /* TINYFED_EXAMPLES_COMMON_DEVICE_LINK_H_ */
