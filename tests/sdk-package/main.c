/* A small firmware for a device with a 32-feature, 4-class head: it checks
 * in, trains on the task it gets and sends the signed update, each message
 * framed for a serial link. Never run: the test links it, checks what it
 * links (no heap, no floating point) and its size. Inputs are volatile
 * stand-ins for the device's data and link so the linker keeps the code
 * a real device needs.
 *
 * Besides the SDK's calls, it includes what a firmware may take from the
 * package next to the SDK (nanopb's generated messages and runtime,
 * mbedTLS's SHA-256 header) and fails to compile when the package does not
 * carry the definitions the libraries were built with.
 */
#include <stddef.h>
#include <stdint.h>

#include "mbedtls/sha256.h"
#include "pb.h"
#include "tinyfed/link.h"
#include "tinyfed/tinyfed.h"
#include "tinyfed/v1/round.nanopb.h"

/* A cross-built package compiles nanopb's runtime and mbedTLS from source
 * with the SDK's configuration (a host package takes Debian's, as Debian
 * configured them). */
#ifdef FW_PACKAGE_BUILT_FROM_SOURCE
/* nanopb's runtime was built for memory buffers only and without error
 * strings: pb_ostream_t and pb_istream_t have another layout otherwise. */
#if !defined(PB_BUFFER_ONLY) || !defined(PB_NO_ERRMSG)
#error "the package did not carry nanopb's PB_BUFFER_ONLY / PB_NO_ERRMSG"
#endif
/* The SDK's mbedTLS configuration (client-sdk/port/mbedtls_config.h), not
 * mbedTLS's default one. */
#ifndef MBEDTLS_SHA256_SMALLER
#error "the package did not carry the SDK's MBEDTLS_CONFIG_FILE"
#endif
#endif

/* tinyfed.h brings the version; it must be the one the package says. */
#ifndef TINYFED_VERSION_STRING
#error "tinyfed/tinyfed.h does not define TINYFED_VERSION_STRING"
#endif
#if defined(FW_EXPECTED_MAJOR) &&                                           \
    (TINYFED_VERSION_MAJOR != FW_EXPECTED_MAJOR ||                          \
     TINYFED_VERSION_MINOR != FW_EXPECTED_MINOR ||                          \
     TINYFED_VERSION_PATCH != FW_EXPECTED_PATCH)
#error "the SDK's version macros differ from the expected version"
#endif

#define FEATURES 32u
#define CLASSES 4u
#define BATCH 8u

/* Found in the image by the test (tests/tools/sdk_package_check.sh). */
const char fw_sdk_version[] = "tinyfed-sdk-version=" TINYFED_VERSION_STRING;

static tinyfed_context_t ctx;
static uint8_t arena[TINYFED_ARENA_SIZE(FEATURES, CLASSES, BATCH)];
static uint8_t buffer[TINYFED_FRAME_DECODER_BUFFER(TINYFED_TASK_MAX_SIZE(FEATURES, CLASSES))];

const uint8_t *volatile fw_device_key;
const int8_t *volatile fw_features;
const uint8_t *volatile fw_labels;
volatile uint32_t fw_count;
volatile uint8_t fw_rx;
volatile uint32_t fw_sink;
const char *volatile fw_version_sink;

static int link_write(void *user, const uint8_t *bytes, size_t length) {
  (void)user;
  while (length-- > 0u) fw_sink = *bytes++;
  return 1;
}

/* Receives one frame into buffer; 0 on a link error. */
static int receive_frame(tinyfed_frame_t *frame) {
  tinyfed_frame_decoder_t decoder;
  int ready = 0;
  if (tinyfed_frame_decoder_init(&decoder, buffer, sizeof buffer) != TINYFED_OK) return 0;
  while (!ready) {
    if (tinyfed_frame_decoder_push(&decoder, fw_rx, &ready, frame) != TINYFED_OK) return 0;
  }
  return 1;
}

int main(void) {
  const tinyfed_config_t config = {"fw-1", FEATURES, CLASSES, BATCH, fw_device_key};
  tinyfed_checkin_result_t result;
  tinyfed_frame_t frame;
  size_t len = 0;
  fw_version_sink = fw_sdk_version;
  fw_sink = (uint32_t)sizeof(tinyfed_v1_Update);
  if (tinyfed_init(&ctx, &config, arena, sizeof arena) != TINYFED_OK) return 1;
  if (tinyfed_checkin_encode(&ctx, fw_count, buffer, sizeof buffer, &len) != TINYFED_OK ||
      tinyfed_frame_write(TINYFED_FRAME_CHECKIN, buffer, len, link_write, NULL) != TINYFED_OK ||
      !receive_frame(&frame) ||
      tinyfed_checkin_response_decode(&ctx, frame.payload, frame.length, &result) != TINYFED_OK) {
    return 1;
  }
  if (result.kind == TINYFED_CHECKIN_TASK) {
    const tinyfed_dataset_t data = {fw_features, fw_labels, fw_count, FEATURES};
    if (tinyfed_train(&ctx, &data) != TINYFED_OK ||
        tinyfed_update_encode(&ctx, buffer, sizeof buffer, &len) != TINYFED_OK ||
        tinyfed_frame_write(TINYFED_FRAME_UPDATE, buffer, len, link_write, NULL) != TINYFED_OK) {
      return 1;
    }
  }
  return 0;
}
