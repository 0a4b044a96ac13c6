#!/usr/bin/env bash
# The SDK as a package a firmware project consumes (tests/sdk-package).
#
#   sdk_package_check.sh --installed SOURCE_DIR WORK_DIR VERSION
#     Cross-builds the SDK for Cortex-M4 (SDK only, -Os), installs it into
#     WORK_DIR/prefix, then builds the firmware project against that prefix
#     with find_package, its own flags (-O2 -g, no build type) and the same
#     toolchain file. Fails when the firmware does not build; when its
#     compile command is not its own (flags added or replaced by the
#     package); when its image references a heap function or a
#     floating-point helper; when its flash (text + data) exceeds
#     TINYFED_BUDGET_SDK_PACKAGE_FIRMWARE_FLASH_BYTES; when the SDK
#     version compiled into it is not VERSION (the project's); and when the
#     SDK's default build (ALL) linked any program.
#
#   sdk_package_check.sh --subdirectory SOURCE_DIR WORK_DIR
#     Configures (host compiler, no build) the same firmware project taking
#     the SDK with add_subdirectory, with -O2 -g and no build type. Fails
#     when the SDK set the firmware's CMAKE_BUILD_TYPE or added the build
#     type's flags to its compile command.
set -euo pipefail
tools=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
mode=$1
root=$(cd "$2" && pwd)
work=$3
project="$root/tests/sdk-package"
mkdir -p "$work"

# fw_compile_command BUILD_DIR: the firmware's main.c compile command.
fw_compile_command() {
  grep '"command": .*sdk-package/main\.c' "$1/compile_commands.json" ||
    { echo "FAIL: no compile command for main.c in $1" >&2; exit 1; }
}

# check_own_flags COMMAND: the firmware's -O2 -g and nothing a build type
# adds (-O3/-Os/-DNDEBUG from Release/MinSizeRel/RelWithDebInfo).
check_own_flags() {
  local command=$1 status=0
  if [[ " $command " != *" -O2 -g "* ]]; then
    echo "FAIL: the firmware's own flags -O2 -g are not in its compile command: $command"
    status=1
  fi
  if [[ "$command" =~ (-DNDEBUG|" -Os "|" -O3 ") ]]; then
    echo "FAIL: a build type's flags (${BASH_REMATCH[1]}) reached the firmware: $command"
    status=1
  fi
  [[ $status == 0 ]] && echo "ok: the firmware compiles with its own flags only (-O2 -g)"
  return $status
}

if [[ "$mode" == "--subdirectory" ]]; then
  build="$work/fw-subdirectory"
  CFLAGS="-O2 -g" cmake --fresh -S "$project" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE= \
    -DFW_TINYFED_SOURCE_DIR="$root" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON >/dev/null
  build_type=$(sed -n 's/^CMAKE_BUILD_TYPE:[A-Z]*=//p' "$build/CMakeCache.txt")
  status=0
  if [[ -n "$build_type" ]]; then
    echo "FAIL: adding the SDK with add_subdirectory set the firmware's CMAKE_BUILD_TYPE to '$build_type'"
    status=1
  else
    echo "ok: the firmware's CMAKE_BUILD_TYPE is still empty after add_subdirectory"
  fi
  check_own_flags "$(fw_compile_command "$build")" || status=1
  exit $status
fi

if [[ "$mode" != "--installed" ]]; then
  echo "usage: sdk_package_check.sh --installed SOURCE_DIR WORK_DIR VERSION | --subdirectory SOURCE_DIR WORK_DIR" >&2
  exit 2
fi
version=$4
source "$tools/cortex_m4_configure.sh"
source "$tools/budget_check.sh"
sdk="$work/sdk"
prefix="$work/prefix"
fw="$work/fw"
rm -rf "$prefix"
cortex_m4_configure "$root" "$sdk" -DCMAKE_INSTALL_PREFIX="$prefix"
# Images of an earlier run must not count as built now (nor stand in for
# a firmware that fails to link).
find "$sdk" "$fw" -name '*.elf' -delete 2>/dev/null || true
cmake --build "$sdk" >/dev/null
cmake --install "$sdk" >/dev/null
status=0
# The SDK's default build makes libraries only: the example images link
# with GCC's newlib specs, which another toolchain lacks.
images=$(find "$sdk" -name '*.elf' -printf '%f ')
if [[ -n "$images" ]]; then
  echo "FAIL: the SDK's default build (ALL) linked programs: $images"
  status=1
else
  echo "ok: the SDK's default build makes libraries only, no example image"
fi
if ! CFLAGS="-O2 -g" cmake --fresh -S "$project" -B "$fw" -G Ninja -DCMAKE_BUILD_TYPE= \
       -DCMAKE_TOOLCHAIN_FILE="$root/deploy/toolchains/arm-cortex-m4.cmake" \
       -DCMAKE_PREFIX_PATH="$prefix" -DCMAKE_EXPORT_COMPILE_COMMANDS=ON \
       -DFW_EXPECTED_TINYFED_VERSION="$version" > "$work/fw.log" 2>&1 ||
   ! cmake --build "$fw" >> "$work/fw.log" 2>&1; then
  echo "FAIL: the firmware does not configure or build against the installed package:"
  grep -E 'error:|CMake Error' "$work/fw.log" | head -n 20
  exit 1
fi
image="$fw/fw.elf"
echo "ok: the firmware built against the installed package ($prefix)"

check_own_flags "$(fw_compile_command "$fw")" || status=1
bash "$tools/cortex_m4_check.sh" --scan "$image" || status=1

found=$(grep -aoE 'tinyfed-sdk-version=[0-9A-Za-z.]+' "$image" | head -n 1 || true)
if [[ "$found" != "tinyfed-sdk-version=$version" ]]; then
  echo "FAIL: the firmware holds '${found:-no version string}', expected tinyfed-sdk-version=$version"
  status=1
else
  echo "ok: TINYFED_VERSION_STRING in the firmware is the project's version $version"
fi

read -r text data _ < <(arm-none-eabi-size "$image" | tail -n 1)
echo "external firmware (32x4 head, check-in, train, signed update; SDK -Os, firmware -O2 -g):"
echo "  text $text, data $data bytes"
check_budget "external firmware flash (text + data)" $((text + data)) \
  TINYFED_BUDGET_SDK_PACKAGE_FIRMWARE_FLASH_BYTES bytes || status=1
exit $status
