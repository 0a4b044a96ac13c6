/* The platform seams of tinyfed's device firmware: a few small functions a
 * board provides so the same application runs on any of them. Porting means
 * adding a folder beside this file (port/<board>/), never editing the SDK.
 * The SDK core itself needs none of these; the example firmware does. */
#ifndef TINYFED_PORT_PORT_H_
#define TINYFED_PORT_PORT_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Sets up the clock and the link. Call once before anything else. */
void tinyfed_port_init(void);

/* Milliseconds since tinyfed_port_init(), monotonic, wrapping at 2^32.
 * Call at least a few times a second so the board's timer cannot wrap
 * unnoticed. */
uint32_t tinyfed_port_millis(void);

/* Reads one byte from the link into *byte without blocking: 1 when a byte
 * was read, 0 when none is pending. */
int tinyfed_port_link_read(uint8_t *byte);

/* Writes `length` bytes to the link, blocking until they are queued. */
void tinyfed_port_link_write(const uint8_t *data, size_t length);

/* One line of diagnostics for a developer (NUL-terminated, no newline). */
void tinyfed_port_log(const char *line);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_PORT_PORT_H_ */
