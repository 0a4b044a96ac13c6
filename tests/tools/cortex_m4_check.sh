#!/usr/bin/env bash
# Cross-builds the SDK for Cortex-M4 (soft float, -Os) and checks what it
# links against: no heap functions and no floating-point helpers in the
# SDK, common, the generated nanopb code, nanopb's runtime or the SDK's
# mbedTLS (SHA-256), nor in a firmware image that uses the whole SDK. Then
# compares the SDK's footprint for a 64x10 head with its budgets
# (tests/tools/budgets.sh): flash, with and without error messages, and
# static RAM of that image minus a baseline image without the SDK,
# measured in the same build, the served model's buffer counted apart.
#
#   cortex_m4_check.sh SOURCE_DIR BUILD_DIR     build, check, compare
#   cortex_m4_check.sh --scan FILE...           check the given files only
#   cortex_m4_check.sh --self-test BUILD_DIR    show the checks catch
#                                               malloc and float helpers
#
# Exits non-zero when a file references a forbidden function, when a file
# cannot be checked (missing, unreadable, without symbols, or LTO bytecode)
# and when a figure exceeds its budget.
set -euo pipefail
tools=$(dirname "${BASH_SOURCE[0]}")
source "$tools/cortex_m4_configure.sh"
source "$tools/cortex_m4_footprint.sh"
source "$tools/budget_check.sh"

heap='^(malloc|calloc|realloc|free|_malloc_r|_calloc_r|_realloc_r|_free_r|aligned_alloc|posix_memalign|memalign|strdup|strndup)$'
# Soft-float runtime: __aeabi_f*/__aeabi_d* (arithmetic, compare, convert),
# __aeabi_[iul]*2[fd], and the libgcc names (__addsf3, __floatsidf, ...).
float='^(__aeabi_[fd][a-z0-9]*|__aeabi_[a-z]*2[fd]|__[a-z]*[sd]f[0-9]?|__[a-z]*[sd]f[a-z]*[0-9]?)$'

# forbidden FILE: prints the forbidden symbols FILE references (undefined
# ones for archives and objects; all symbols for a linked image). Returns 1
# with the reason on stdout when FILE cannot be checked: missing, not
# readable by nm, without any symbol, or holding LTO bytecode (nm then
# lists the bytecode's symbol table, which leaves out calls to built-in
# functions such as malloc, so a reference would go unseen).
forbidden() {
  local f=$1 listing
  if [[ ! -r "$f" ]]; then
    echo "cannot read it (missing?), so cannot check it"
    return 1
  fi
  if ! listing=$(arm-none-eabi-nm "$f" 2>&1); then
    echo "nm cannot read it, so cannot check it: $(echo $listing | head -c 200)"
    return 1
  fi
  if ! grep -qE '^[0-9a-fA-F]* *[A-Za-z] ' <<<"$listing"; then
    echo "no symbols at all, so nothing to check (an empty library?)"
    return 1
  fi
  if arm-none-eabi-objdump -h "$f" 2>/dev/null | grep -q '\.gnu\.lto_'; then
    echo "holds LTO bytecode, whose references nm does not list; check a build without -flto"
    return 1
  fi
  case "$f" in
    *.elf) printf '%s\n' "$listing" ;;
    *) arm-none-eabi-nm -u "$f" ;;
  esac | awk '{print $NF}' | grep -E "$heap|$float" | sort -u || true
}

# check_files FILE...: one line per file; returns 1 if any file fails.
check_files() {
  local f found status=0
  for f in "$@"; do
    if ! found=$(forbidden "$f"); then
      echo "FAIL: $(basename "$f"): $found"
      status=1
    elif [[ -n "$found" ]]; then
      echo "FAIL: $(basename "$f") references $(echo $found | tr '\n' ' ')"
      status=1
    else
      echo "ok: $(basename "$f") references no heap function and no floating-point helper"
    fi
  done
  return $status
}

if [[ "${1:-}" == "--scan" ]]; then
  shift
  check_files "$@"
  exit $?
fi

if [[ "${1:-}" == "--self-test" ]]; then
  dir=$2
  mkdir -p "$dir"
  printf '#include <stdlib.h>\nvoid *f(size_t n) { return malloc(n); }\n' > "$dir/heap.c"
  printf 'int g(int x) { return (int)(x * 1.5f); }\nint h(int x) { return (int)(x / 3.0); }\n' > "$dir/float.c"
  for name in heap float; do
    arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -Os -c "$dir/$name.c" -o "$dir/$name.o"
    if ! found=$(forbidden "$dir/$name.o"); then
      echo "FAIL: the check could not read $name.o: $found"
      exit 1
    fi
    if [[ -z "$found" ]]; then
      echo "FAIL: the check missed what $name.c references"
      exit 1
    fi
    echo "ok: the check flags $name.c: $(echo $found | tr '\n' ' ')"
  done
  # The same malloc call compiled to LTO bytecode: nm lists no reference
  # to it, so the check must refuse the object rather than pass it.
  arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -Os -flto -c "$dir/heap.c" \
    -o "$dir/heap_lto.o"
  if found=$(forbidden "$dir/heap_lto.o") || [[ "$found" != *"LTO bytecode"* ]]; then
    echo "FAIL: the check did not refuse LTO bytecode: '$found'"
    exit 1
  fi
  echo "ok: the check refuses heap_lto.o: $found"
  exit 0
fi

src=$1
build=$2
root=$(cd "$src" && pwd)
cortex_m4_configure "$root" "$build"
# The footprint images are out of ALL (client-sdk/CMakeLists.txt).
cmake --build "$build" --target tinyfed_sdk tinyfed_footprint tinyfed_footprint_quiet \
  tinyfed_footprint_training tinyfed_footprint_baseline >/dev/null

libs=("$build/client-sdk/libtinyfed_sdk.a" "$build/common/libtinyfed_common.a"
      "$build/proto/libtinyfed_proto_nanopb.a" "$build/proto/libtinyfed_nanopb_runtime.a"
      "$build/client-sdk/libtinyfed_mbedtls.a")
image="$build/client-sdk/tinyfed_footprint.elf"
quiet="$build/client-sdk/tinyfed_footprint_quiet.elf"
training="$build/client-sdk/tinyfed_footprint_training.elf"
baseline="$build/client-sdk/tinyfed_footprint_baseline.elf"
status=0
check_files "${libs[@]}" "$image" "$quiet" "$training" || status=1

flash=$(footprint_flash "$image" "$baseline")
qflash=$(footprint_flash "$quiet" "$baseline")
tflash=$(footprint_flash "$training" "$baseline")
ram=$(footprint_static_ram "$image" "$baseline")
model_ram=$(footprint_serving_ram "$image")
arena=$(footprint_symbol_size "$image" arena)
echo "Cortex-M4 footprint, 64x10 head (SDK + nanopb + mbedTLS SHA-256, -Os, soft float):"
echo "  flash        $flash bytes: SDK, nanopb and mbedTLS code, constants and strings"
echo "               $qflash bytes with TINYFED_NO_ERROR_MESSAGES (the small-target configuration)"
echo "               $tflash bytes for a device that only trains (no inference API)"
echo "  static RAM   $ram bytes in the example image: context, arena of $arena bytes,"
echo "               and one buffer for frames and messages (the SDK itself holds no static data)"
echo "  serving RAM  $model_ram bytes: the served 64x10 model's buffer (TINYFED_MODEL_SIZE(64, 10)),"
echo "               apart from the above (a firmware may keep it in flash instead)"
check_budget "flash (SDK + nanopb + crypto)" "$flash" TINYFED_BUDGET_FLASH_BYTES bytes || status=1
check_budget "flash without error messages" "$qflash" TINYFED_BUDGET_FLASH_QUIET_BYTES bytes || status=1
check_budget "flash of a training-only device" "$tflash" TINYFED_BUDGET_FLASH_TRAINING_ONLY_BYTES bytes || status=1
check_budget "static RAM" "$ram" TINYFED_BUDGET_STATIC_RAM_BYTES bytes || status=1
check_budget "serving model RAM" "$model_ram" TINYFED_BUDGET_SERVING_MODEL_RAM_BYTES bytes || status=1
exit $status
