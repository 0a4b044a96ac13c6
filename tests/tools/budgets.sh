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
# flash <= 14 KB with signing (14,336). Today 14,468: headroom 0, and 132
# BYTES ABOVE THE TARGET: federated evaluation (issue 14) added 472 bytes
# to 13,996: tinyfed_evaluate 320 (its own dataset checks, the forward
# pass and the training's softmax reused), the loss total split out of the
# mean loss 80, the shared argmax 32 (classify 22 shorter), the encoder's
# evaluation 36, nanopb's Evaluation descriptor 84, the context's 32 bytes
# elsewhere; the training function 76 shorter. Signing added 1,708 bytes
# to the unsigned 12,288: mbedTLS's SHA-256 1,198 (its round constants
# 256), the HMAC 206, the envelope's framing and nanopb's sizing call the
# rest.
TINYFED_BUDGET_FLASH_BYTES=14468

# The same with TINYFED_NO_ERROR_MESSAGES, the small-target configuration.
# Target: the same 14 KB. Today 13,484: headroom 852 bytes. (The build
# with messages is the binding one; this budget keeps the small
# configuration's promise should the two ever diverge.)
TINYFED_BUDGET_FLASH_QUIET_BYTES=14336

# RAM for a 64x10 head. Target: DESIGN.md, RAM <= 8 KB, static data plus the
# stack the SDK calls take. The target is split into a budget per part so
# that either part growing shows up by name; the total is checked on its
# own so that raising one part's budget cannot quietly break the target.
#   static RAM of the footprint image (context, arena for batches of 16, one
#   frame/message buffer): today 6,012 (the context's evaluation added
#   32), headroom 132 bytes.
TINYFED_BUDGET_STATIC_RAM_BYTES=6144
#   peak stack of decode, evaluate, train and encode, signing included
#   (the bit-exactness firmware's painted stack, case 0): today 1,060 (the
#   Update's evaluation on the encoder's stack), headroom 988 bytes.
TINYFED_BUDGET_STACK_BYTES=2048
#   static + stack: today 7,072, headroom 1,120 bytes.
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

# Instructions per evaluated sample on the Cortex-M4 (tinyfed_evaluate on
# case 0's 96 samples, 64x10 head: dataset checks, forward pass, argmax,
# softmax and loss, the final loss total), counted under qemu's -icount
# like the training figure (tests/tools/cortex_m4_bitexact.sh). No target
# in DESIGN.md: an evaluation is one forward pass and the loss, about half
# a training step, and this budget keeps it there. Today 2,005: headroom
# 43.
TINYFED_BUDGET_EVALUATION_INSTRUCTIONS_PER_SAMPLE=2048

# Instructions on the Cortex-M4 to tag the longest 64x10 update (HMAC-
# SHA256 over the label and an 826-byte body, the SDK's bound
# TINYFED_UPDATE_MAX_SIZE(64, 10) less the envelope),
# with mbedTLS's SHA-256 as the SDK configures it, counted under qemu's
# -icount to within 40 (tests/tools/cortex_m4_bitexact.sh). Target: issue
# 12, <= 70,000 to authenticate one 64x10 update. Today 68,040: headroom
# 1,960, half a SHA-256 block (the bound's 26 bytes for the evaluation took
# one block more, 3,920, over the 800-byte body's 64,120).
TINYFED_BUDGET_TAG_INSTRUCTIONS=70000

# One encoded 64x10 update as the device sends it, signed: the
# SignedRequest (device id, the Update as its body, a 32-byte HMAC tag)
# with the longest device id and token, scales and loss
# and the device's evaluation with each field at its longest for the case
# (tests/client-sdk/wire_size_test.cc). "Envelope" is every byte beyond the
# 650 int8 values. Measured for rounds and versions below 2^21 and fewer
# than 2^14 samples: today 839 and 189, headroom 0. Signing added 71 bytes
# to the unsigned 750 and 100 (DESIGN.md's earlier target): the device id
# again in the envelope (2 + 32), the body's key and length (3) and the tag
# field (2 + 32). Federated evaluation (issue 14) added 18 to 821 and 171:
# the Evaluation's key and length (2), version (1 + 3), samples and
# correct (1 + 2 each) and loss sum (1 + 5, a sum at or above 2^28). Any
# new field must bring its bytes back from elsewhere, or move the budget in
# a commit that says why.
TINYFED_BUDGET_UPDATE_BYTES=839
TINYFED_BUDGET_UPDATE_ENVELOPE_BYTES=189
# The same with round and version at 2^32 - 1 and 2^14 samples (five-byte
# round and version, a three-byte count): pinned at today's 198 (105
# unsigned, the same 71 bytes of signing, and an evaluation of 22: version
# 1 + 5, samples and correct 1 + 3 each, loss 1 + 5, key and length 2),
# headroom 0, so that it grows only in a commit that says why.
TINYFED_BUDGET_UPDATE_ENVELOPE_EXTREME_BYTES=198
