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
# float, error messages kept), a device that trains and serves deployed
# models: every call of a round, evaluation-only tasks, the check-in's
# serving state and the inference API. Target: DESIGN.md "Performance
# targets", flash <= 14 KB with signing (14,336), set before devices served
# models. Today 16,288: headroom 0, 1,952 BYTES ABOVE THAT TARGET (24 of
# them since the fuzzer's finding: the check that a model's span lies
# inside the response, every device pays it). Serving
# (issue 14) added 1,796 to 14,468: 436 that every device pays (see the
# training-only budget below) and 1,360 that only a serving firmware links:
# tinyfed_model_decode 432 (nanopb streaming of weights and bias into the
# buffer, its checks, the header), the header's validation 232 (check
# word, format ranges, size), tinyfed_model_info 90, _classify 76,
# _evaluate 112, the serving check-in encoder 196 (its evaluation's
# checks), tinyfed_evaluation_encode 112, strings about 90. Federated
# evaluation (issue 14) had added 472 bytes to 13,996 and signing 1,708 to
# the unsigned 12,288 (mbedTLS's SHA-256 1,198, the HMAC 206, the
# envelope's framing and nanopb's sizing call the rest).
TINYFED_BUDGET_FLASH_BYTES=16288

# The same with TINYFED_NO_ERROR_MESSAGES, the small-target configuration.
# Target: the same 14 KB. Today 15,252: headroom 0, 916 bytes above the
# target (13,484 before serving; 24 for the span check).
TINYFED_BUDGET_FLASH_QUIET_BYTES=15252

# The same SDK in a firmware that only trains (the footprint image built
# with TINYFED_FOOTPRINT_TRAINING_ONLY: no inference API, no evaluation-
# only tasks, check-ins without serving state): what serving costs a
# device that does not use it. Today 14,928: headroom 0, 592 bytes above
# the 14 KB target; 460 more than the 14,468 before serving (24 of them the
# check that a model's span lies inside the response, added after a fuzz
# finding): the head's
# arithmetic shared with the inference API (forward plan and evaluation
# loop out of line, the dataset checks as a function) 232, the check-in
# response's third kind (the model located, the context restored) 116,
# evaluation-only tasks in the task decoder 24, the check-in split for
# its serving variant 28, nanopb's ServingState descriptors and the
# longer CheckInRequest/Response/RoundTask tables 92, strings 44, less
# tinyfed_evaluate's and the update encoder's shared parts 100.
TINYFED_BUDGET_FLASH_TRAINING_ONLY_BYTES=14928

# RAM for a 64x10 head. Target: DESIGN.md, RAM <= 8 KB, static data plus the
# stack the SDK calls take. The target is split into a budget per part so
# that either part growing shows up by name; the total is checked on its
# own so that raising one part's budget cannot quietly break the target.
#   static RAM of the footprint image (context, arena for batches of 16, one
#   frame/message buffer): today 6,008 (the context's evaluation added
#   32, serving took 4 back), headroom 136 bytes. The served model's
#   buffer is not in it (its own budget below).
TINYFED_BUDGET_STATIC_RAM_BYTES=6144
#   peak stack of decode, evaluate, train and encode, signing included
#   (the bit-exactness firmware's painted stack, case 0): today 1,060 (the
#   Update's evaluation on the encoder's stack), headroom 988 bytes. The
#   serving calls (model decode, classify, evaluate) are held to the same
#   budget: today 884.
TINYFED_BUDGET_STACK_BYTES=2048
#   static + stack: today 7,068, headroom 1,124 bytes.
TINYFED_BUDGET_RAM_BYTES=8192

# RAM of the served 64x10 model's buffer (TINYFED_MODEL_SIZE(64, 10): a
# 40-byte header, 640 int16 weights and 10 biases), counted apart from the
# training RAM above: a firmware may keep it in flash, and serving needs
# no arena. Today 1,340: headroom 0, as the layout fixes it.
TINYFED_BUDGET_SERVING_MODEL_RAM_BYTES=1340

# Flash (text + data) of the external firmware in tests/sdk-package: a
# 32x4 head's check-in, training and signed update, built with its own -O2
# -g against the SDK installed as a package from the Cortex-M4 SDK-only
# build (-Os), newlib's start-up and stubs included
# (tests/tools/sdk_package_check.sh). Today 16,004: headroom 500 bytes,
# about 3%: room for the SDK's own growth, which its flash budgets above
# bind, but not for a package that hands the firmware libraries built
# another way (the SDK's library alone at -O2 instead of -Os adds 804).
# Serving (issue 14) added 504 to 15,500, what it costs a device that only
# trains (the training-only flash budget above: 436 there).
TINYFED_BUDGET_SDK_PACKAGE_FIRMWARE_FLASH_BYTES=16504

# Instructions per training sample on the Cortex-M4 (64x10 head, batch 8,
# batch updates and the final delta quantization included), counted under
# qemu's -icount. Target: DESIGN.md, <= 4,000. Today 3,936: headroom 64.
TINYFED_BUDGET_INSTRUCTIONS_PER_SAMPLE=4000

# Instructions per evaluated sample on the Cortex-M4 (tinyfed_evaluate on
# case 0's 96 samples, 64x10 head: dataset checks, forward pass, argmax,
# softmax and loss, the final loss total), counted under qemu's -icount
# like the training figure (tests/tools/cortex_m4_bitexact.sh). No target
# in DESIGN.md: an evaluation is one forward pass and the loss, about half
# a training step, and this budget keeps it there. Today 2,006: headroom
# 42.
TINYFED_BUDGET_EVALUATION_INSTRUCTIONS_PER_SAMPLE=2048

# Instructions per sample classified with a deployed model on the
# Cortex-M4 (tinyfed_model_classify on case 0's 96 samples, 64x10 model:
# the header's check, the forward pass, argmax), counted under qemu's
# -icount like the figures above (tests/tools/cortex_m4_bitexact.sh). No
# target in DESIGN.md: the forward pass of training, and this budget
# keeps it there. Today 1,494: headroom 42.
TINYFED_BUDGET_CLASSIFY_INSTRUCTIONS_PER_SAMPLE=1536

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
