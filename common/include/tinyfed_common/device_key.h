/* Per-device keys: the contract between the server, tinyfed-admin and the
 * device SDK. C99, no code: every side computes the derivation with its own
 * well-kept crypto library (OpenSSL on the host, mbedTLS on the device) and
 * must get the same 32 bytes.
 *
 *   device_key = HMAC-SHA256(fleet_key, TINYFED_DEVICE_KEY_LABEL || device_id)
 *
 * - fleet_key: TINYFED_FLEET_KEY_SIZE (32) random bytes, held only by the
 *   server and the operator's provisioning tool.
 * - TINYFED_DEVICE_KEY_LABEL: the TINYFED_DEVICE_KEY_LABEL_SIZE (22) bytes
 *   "tinyfed/v1 device key" followed by one NUL byte, that is the string
 *   literal together with its terminator (sizeof, not strlen). The label
 *   separates this use of the fleet key from any later one (another label,
 *   another version); its fixed length and the NUL, which no device id may
 *   contain, make label || id decode one way only.
 * - device_id: the id's bytes as sent on the wire, no terminator: 1 to
 *   TINYFED_DEVICE_ID_MAX_SIZE (32) bytes, each printable ASCII in
 *   [0x21, 0x7E] (the server refuses any other id).
 *
 * A device key is a secret: it is provisioned into one device's firmware and
 * never logged. A change to the label or the input layout is a new version
 * of the label ("tinyfed/v2 ..."), never an edit of this one: every
 * provisioned device depends on it.
 *
 * Fixed vector (python3's hmac module, fleet key bytes 0x00..0x1f, id
 * "dev-0001"):
 *   1878b31ebaf61e174862849db2e30a1aa8ff2524f81beede69b83d671f127d43
 */
#ifndef TINYFED_COMMON_DEVICE_KEY_H_
#define TINYFED_COMMON_DEVICE_KEY_H_

#define TINYFED_FLEET_KEY_SIZE 32
#define TINYFED_DEVICE_KEY_SIZE 32

#define TINYFED_DEVICE_KEY_LABEL "tinyfed/v1 device key"
/* The label's bytes in the HMAC input, its terminating NUL included. */
#define TINYFED_DEVICE_KEY_LABEL_SIZE 22

#define TINYFED_DEVICE_ID_MAX_SIZE 32
#define TINYFED_DEVICE_ID_MIN_CHAR 0x21
#define TINYFED_DEVICE_ID_MAX_CHAR 0x7E

#endif /* TINYFED_COMMON_DEVICE_KEY_H_ */
