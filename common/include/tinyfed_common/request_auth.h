/* Authenticated requests: the contract between the device SDK (mbedTLS),
 * the host tools (OpenSSL) and the server. C99, no code.
 *
 * A device sends every CheckInRequest and Update inside a SignedRequest
 * (proto/tinyfed/v1/coordinator.proto) whose tag is
 *
 *   tag = HMAC-SHA256(device_key, label || body)
 *
 * - device_key: the device's 32-byte key (device_key.h).
 * - label: the body type's label below, its terminating NUL included
 *   (sizeof, not strlen). A tag made for one type of body therefore never
 *   verifies as another type's, whatever the body's bytes.
 * - body: the encoded message's exact bytes, as carried in
 *   SignedRequest.body. The tag is over these bytes, not over a parse of
 *   them: the server checks it before parsing, and no relay may re-encode.
 * - tag: all TINYFED_TAG_SIZE (32) bytes; the server compares in constant
 *   time and accepts no shortened tag.
 *
 * Labels are versioned like the device key label: a change is a new label,
 * never an edit of one, as deployed devices depend on it.
 *
 * Fixed vectors (python3's hmac module), with the key of device "dev-0001"
 * under fleet key 0x00..0x1f (device_key.h) and the body 0a 08 "dev-0001"
 * (a CheckInRequest holding only that device id):
 *   CheckInRequest label: 00192496c68442dbe9e8fe4348f8dc1f3c99e642127201cff3857740940f4f4e
 *   Update label:         5322a0e1ebe8d7ca60830952c04786ae95e2006e8adbe119100129e89bf7435f
 */
#ifndef TINYFED_COMMON_REQUEST_AUTH_H_
#define TINYFED_COMMON_REQUEST_AUTH_H_

#define TINYFED_TAG_SIZE 32

#define TINYFED_CHECKIN_TAG_LABEL "tinyfed/v1 CheckInRequest"
#define TINYFED_CHECKIN_TAG_LABEL_SIZE 26 /* with the NUL */

#define TINYFED_UPDATE_TAG_LABEL "tinyfed/v1 Update"
#define TINYFED_UPDATE_TAG_LABEL_SIZE 18 /* with the NUL */

#endif /* TINYFED_COMMON_REQUEST_AUTH_H_ */
