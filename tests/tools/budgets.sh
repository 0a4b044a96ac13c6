# The budgets of tinyfed's deterministic figures: the one place their
# numbers live. Sourced by the Cortex-M4 test scripts; read by CMake
# (tests/CMakeLists.txt) for the C++ tests. Each line is NAME=INTEGER,
# nothing else on it, so both can read it.
#
# A figure above its budget by even one unit fails its test. A budget moves
# only in a commit that says why; "today" below is the figure when the
# budget was last set, and the headroom is budget - today.

# Flash of SDK + nanopb + crypto (mbedTLS's SHA-256 with
# MBEDTLS_SHA256_SMALLER, client-sdk/port/mbedtls_config.h) code, constants
# and strings in the Cortex-M4 footprint image (64x10 head, -Os, soft
# float, error messages kept). Target: DESIGN.md "Performance targets",
# flash <= 14 KB with signing (14,336). Today 13,996: headroom 0, 340 bytes
# under the target. Signing added 1,708 bytes to the unsigned 12,288:
# mbedTLS's SHA-256 1,198 (its round constants 256), the HMAC 206, the
# envelope's framing and nanopb's sizing call the rest.
TINYFED_BUDGET_FLASH_BYTES=13996

# The same with TINYFED_NO_ERROR_MESSAGES, the small-target configuration.
# Target: the same 14 KB. Today 13,064: headroom 1,272 bytes. (The build
# with messages is the binding one; this budget keeps the small
# configuration's promise should the two ever diverge.)
TINYFED_BUDGET_FLASH_QUIET_BYTES=14336

# RAM for a 64x10 head. Target: DESIGN.md, RAM <= 8 KB, static data plus the
# stack the SDK calls take. The target is split into a budget per part so
# that either part growing shows up by name; the total is checked on its
# own so that raising one part's budget cannot quietly break the target.
#   static RAM of the footprint image (context, arena for batches of 16, one
#   frame/message buffer): today 5,976, headroom 168 bytes.
TINYFED_BUDGET_STATIC_RAM_BYTES=6144
#   peak stack of decode, train and encode, signing included (the
#   bit-exactness firmware's painted stack, case 0): today 1,028, headroom
#   1,020 bytes.
TINYFED_BUDGET_STACK_BYTES=2048
#   static + stack: today 7,004, headroom 1,188 bytes.
TINYFED_BUDGET_RAM_BYTES=8192

# Flash (text + data) of the external firmware in tests/sdk-package: a
# 32x4 head's check-in, training and signed update, built with its own -O2
# -g against the SDK installed as a package from the Cortex-M4 SDK-only
# build (-Os), newlib's start-up and stubs included
# (tests/tools/sdk_package_check.sh). Today 15,500: headroom 500 bytes,
# about 3%: room for the SDK's own growth, which its flash budget above
# binds, but not for a package that hands the firmware libraries built
# another way (the SDK's library alone at -O2 instead of -Os adds 804).
TINYFED_BUDGET_SDK_PACKAGE_FIRMWARE_FLASH_BYTES=16000

# Instructions per training sample on the Cortex-M4 (64x10 head, batch 8,
# batch updates and the final delta quantization included), counted under
# qemu's -icount. Target: DESIGN.md, <= 4,000. Today 3,937: headroom 63.
TINYFED_BUDGET_INSTRUCTIONS_PER_SAMPLE=4000

# Instructions on the Cortex-M4 to tag the longest 64x10 update (HMAC-
# SHA256 over the label and an 800-byte body, the SDK's bound
# TINYFED_UPDATE_MAX_SIZE(64, 10) less the envelope: 17 SHA-256 blocks),
# with mbedTLS's SHA-256 as the SDK configures it, counted under qemu's
# -icount to within 40 (tests/tools/cortex_m4_bitexact.sh). Target: issue
# 12, <= 70,000 to authenticate one 64x10 update. Today 64,120: headroom
# 5,880, about one and a half blocks.
TINYFED_BUDGET_TAG_INSTRUCTIONS=70000

# One encoded 64x10 update as the device sends it, signed: the
# SignedRequest (device id, the Update as its body, a 32-byte HMAC tag)
# with the longest device id and token, scales and loss
# (tests/client-sdk/wire_size_test.cc). "Envelope" is every byte beyond the
# 650 int8 values. Measured for rounds and versions below 2^21 and fewer
# than 2^14 samples: today 821 and 171, headroom 0. Signing added 71 bytes
# to the unsigned 750 and 100 (DESIGN.md's earlier target): the device id
# again in the envelope (2 + 32), the body's key and length (3) and the tag
# field (2 + 32); any new field must bring its bytes back from elsewhere,
# or move the budget in a commit that says why.
TINYFED_BUDGET_UPDATE_BYTES=821
TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES=171
# The same with round and version at 2^32 - 1 and 2^14 samples (five-byte
# round and version, a three-byte count): pinned at today's 176 (105
# unsigned, plus the same 71 bytes of signing), headroom 0, so that it
# grows only in a commit that says why.
TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES=176
