/* Internal to the SDK (and to its tests and the bit-exactness firmware,
 * which time and check it): the tag of an authenticated request. */
#ifndef TINYFED_SRC_REQUEST_TAG_H_
#define TINYFED_SRC_REQUEST_TAG_H_

#include <stddef.h>
#include <stdint.h>

#include "tinyfed_common/device_key.h"
#include "tinyfed_common/request_auth.h"

#ifdef __cplusplus
extern "C" {
#endif

/* tag = HMAC-SHA256(key, label[0..label_size) || body[0..body_len)), the
 * construction of RFC 2104 over mbedTLS's SHA-256 (request_auth.h gives
 * what label and body are). [in] key: TINYFED_DEVICE_KEY_SIZE bytes.
 * [in] label, body: any bytes (body may be NULL when body_len is 0).
 * [out] tag: TINYFED_TAG_SIZE bytes; may not overlap the inputs. Cannot
 * fail. Wipes the padded key and the inner hash from the stack. */
void tinyfed_request_tag(const uint8_t *key, const uint8_t *label, size_t label_size,
                         const uint8_t *body, size_t body_len, uint8_t *tag);

#ifdef __cplusplus
}
#endif

#endif /* TINYFED_SRC_REQUEST_TAG_H_ */
