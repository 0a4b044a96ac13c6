# Cross compilation for Arm Cortex-M4 without an FPU (soft-float ABI), with
# Debian's gcc-arm-none-eabi and libnewlib-arm-none-eabi. Use with
# -DTINYFED_SDK_ONLY=ON and -DTINYFED_NANOPB_SOURCE_DIR=<nanopb sources>
# (deploy/fetch_nanopb_source.sh caches them).
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)

set(CMAKE_C_COMPILER arm-none-eabi-gcc)
set(CMAKE_CXX_COMPILER arm-none-eabi-g++)
set(CMAKE_ASM_COMPILER arm-none-eabi-gcc)
set(CMAKE_AR arm-none-eabi-ar)
set(CMAKE_RANLIB arm-none-eabi-ranlib)
set(CMAKE_SIZE arm-none-eabi-size)
set(CMAKE_NM arm-none-eabi-nm)

# Bare metal: test compiles link a static library, not a program.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)

set(TINYFED_CPU_FLAGS "-mcpu=cortex-m4 -mthumb -mfloat-abi=soft")
set(CMAKE_C_FLAGS_INIT "${TINYFED_CPU_FLAGS} -ffunction-sections -fdata-sections")
set(CMAKE_C_FLAGS_MINSIZEREL_INIT "-Os -DNDEBUG")
# Programs pick their system-call layer: nosys.specs (no I/O) or
# rdimon.specs (semihosting, for the emulated board).
set(CMAKE_EXE_LINKER_FLAGS_INIT "${TINYFED_CPU_FLAGS} -Wl,--gc-sections --specs=nano.specs")

# Programs (protoc, the nanopb generator) come from the host; libraries and
# headers only from the target's sysroot.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
