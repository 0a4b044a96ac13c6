#include "device_link.h"

#include <stdio.h>

#include "../../port/port.h"

tinyfed_status_t device_link_init(device_link_t *link, uint8_t *frame_out, size_t frame_out_size,
                                  uint8_t *frame_in, size_t frame_in_size) {
  link->frame_out = frame_out;
  link->frame_out_size = frame_out_size;
  return tinyfed_frame_decoder_init(&link->decoder, frame_in, frame_in_size);
}

int device_link_exchange(device_link_t *link, uint8_t type, const uint8_t *payload, size_t length,
                         tinyfed_frame_t *reply) {
  size_t n = 0;
  if (tinyfed_frame_encode(type, payload, length, link->frame_out, link->frame_out_size, &n) !=
      TINYFED_OK) {
    return 0;
  }
  tinyfed_port_link_write(link->frame_out, n);
  const uint32_t start = tinyfed_port_millis();
  while (tinyfed_port_millis() - start < DEVICE_LINK_ANSWER_TIMEOUT_MS) {
    uint8_t byte;
    int ready = 0;
    if (!tinyfed_port_link_read(&byte)) continue;
    if (tinyfed_frame_decoder_push(&link->decoder, byte, &ready, reply) == TINYFED_OK && ready) {
      return 1;
    }
  }
  return 0;
}

void device_link_report_error(const tinyfed_frame_t *reply, char *line, size_t line_size) {
  size_t n = reply->length < 100u ? reply->length : 100u;
  size_t i;
  int at = snprintf(line, line_size, "server error: ");
  for (i = 0; i < n && at + 1 < (int)line_size; ++i) line[at++] = (char)reply->payload[i];
  line[at] = '\0';
  tinyfed_port_log(line);
}

void device_link_wait_ms(uint32_t ms) {
  const uint32_t start = tinyfed_port_millis();
  while (tinyfed_port_millis() - start < ms) {
  }
}

void device_link_wait_retry(const char *what, uint32_t retry_after_ms, char *line,
                            size_t line_size) {
  snprintf(line, line_size, "%s; checking in again in %lu ms", what,
           (unsigned long)retry_after_ms);
  tinyfed_port_log(line);
  device_link_wait_ms(retry_after_ms < DEVICE_LINK_RETRY_WAIT_MAX_MS
                          ? retry_after_ms
                          : DEVICE_LINK_RETRY_WAIT_MAX_MS);
}
