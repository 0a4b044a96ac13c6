#!/usr/bin/env bash
# Cross-builds the SDK for Cortex-M4 (soft float, -Os) and checks what it
# links against: no heap functions and no floating-point helpers in the
# SDK, common, the generated nanopb code or nanopb's runtime, nor in a
# firmware image that uses the whole SDK. Then prints the SDK's footprint
# for a 64x10 head: flash and static RAM of that image minus a baseline
# image without the SDK, measured in the same build.
#
#   cortex_m4_check.sh SOURCE_DIR BUILD_DIR     build, check, report
#   cortex_m4_check.sh --self-test BUILD_DIR    show the checks catch
#                                               malloc and float helpers
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/cortex_m4_configure.sh"

heap='^(malloc|calloc|realloc|free|_malloc_r|_calloc_r|_realloc_r|_free_r|aligned_alloc|posix_memalign|memalign|strdup|strndup)$'
# Soft-float runtime: __aeabi_f*/__aeabi_d* (arithmetic, compare, convert),
# __aeabi_[iul]*2[fd], and the libgcc names (__addsf3, __floatsidf, ...).
float='^(__aeabi_[fd][a-z0-9]*|__aeabi_[a-z]*2[fd]|__[a-z]*[sd]f[0-9]?|__[a-z]*[sd]f[a-z]*[0-9]?)$'

# Prints the forbidden symbols FILES reference (undefined ones for archives
# and objects; all symbols for a linked image).
forbidden() {
  for f in "$@"; do
    case "$f" in
      *.elf) arm-none-eabi-nm "$f" ;;
      *) arm-none-eabi-nm -u "$f" ;;
    esac
  done 2>/dev/null | awk '{print $NF}' | grep -E "$heap|$float" | sort -u || true
}

if [[ "${1:-}" == "--self-test" ]]; then
  dir=$2
  mkdir -p "$dir"
  printf '#include <stdlib.h>\nvoid *f(size_t n) { return malloc(n); }\n' > "$dir/heap.c"
  printf 'int g(int x) { return (int)(x * 1.5f); }\nint h(int x) { return (int)(x / 3.0); }\n' > "$dir/float.c"
  for name in heap float; do
    arm-none-eabi-gcc -mcpu=cortex-m4 -mthumb -mfloat-abi=soft -Os -c "$dir/$name.c" -o "$dir/$name.o"
    found=$(forbidden "$dir/$name.o")
    if [[ -z "$found" ]]; then
      echo "FAIL: the check missed what $name.c references"
      exit 1
    fi
    echo "ok: the check flags $name.c: $(echo $found | tr '\n' ' ')"
  done
  exit 0
fi

src=$1
build=$2
root=$(cd "$src" && pwd)
cortex_m4_configure "$root" "$build"
cmake --build "$build" >/dev/null

libs=("$build/client-sdk/libtinyfed_sdk.a" "$build/common/libtinyfed_common.a"
      "$build/proto/libtinyfed_proto_nanopb.a" "$build/proto/libtinyfed_nanopb_runtime.a")
image="$build/client-sdk/tinyfed_footprint.elf"
baseline="$build/client-sdk/tinyfed_footprint_baseline.elf"
status=0
for f in "${libs[@]}" "$image" "$build/client-sdk/tinyfed_footprint_quiet.elf"; do
  found=$(forbidden "$f")
  if [[ -n "$found" ]]; then
    echo "FAIL: $(basename "$f") references $(echo $found | tr '\n' ' ')"
    status=1
  else
    echo "ok: $(basename "$f") references no heap function and no floating-point helper"
  fi
done

# Flash of the SDK and nanopb: the sizes, in the linked image, of the
# functions and constants those four libraries define (so unused code the
# linker dropped does not count, and neither does the application's main).
# Flash of the SDK and nanopb, constants and strings included: the image
# minus the baseline image, less what else differs between them (the
# application's main, and the C library's memcpy/memset, reported apart).
symbol_size() {  # IMAGE NAME...: total size of the named symbols
  local image=$1
  shift
  arm-none-eabi-nm -S --radix=d "$image" |
    awk -v names=" $* " 'NF == 4 && index(names, " " $4 " ") { total += $2 + 0 } END { print total + 0 }'
}
read -r text data bss _ < <(arm-none-eabi-size "$image" | tail -n 1)
read -r btext bdata bbss _ < <(arm-none-eabi-size "$baseline" | tail -n 1)
main_diff=$(( $(symbol_size "$image" main) - $(symbol_size "$baseline" main) ))
libc=$(( $(symbol_size "$image" memcpy memset) - $(symbol_size "$baseline" memcpy memset) ))
flash=$(( (text + data) - (btext + bdata) - main_diff - libc ))
ram=$(( (data + bss) - (bdata + bbss) ))
arena=$(symbol_size "$image" arena)
echo "Cortex-M4 footprint, 64x10 head (SDK + nanopb, -Os, soft float):"
echo "  flash        $flash bytes: SDK and nanopb code, constants and strings"
echo "               (image $((text + data)) - baseline $((btext + bdata)) - main's $main_diff - memcpy/memset $libc)"
quiet="$build/client-sdk/tinyfed_footprint_quiet.elf"
read -r qtext qdata _ < <(arm-none-eabi-size "$quiet" | tail -n 1)
qmain=$(( $(symbol_size "$quiet" main) - $(symbol_size "$baseline" main) ))
qlibc=$(( $(symbol_size "$quiet" memcpy memset) - $(symbol_size "$baseline" memcpy memset) ))
qflash=$(( (qtext + qdata) - (btext + bdata) - qmain - qlibc ))
echo "               $qflash bytes with TINYFED_NO_ERROR_MESSAGES (the small-target configuration)"
echo "  static RAM   $ram bytes in the example image: context, arena of $arena bytes,"
echo "               and one buffer for frames and messages (the SDK itself holds no static data)"
exit $status
