# Sourced by the cortex_m4_*.sh scripts: configures a Cortex-M4 cross build
# of the SDK (nanopb's runtime from its cached Debian sources).
#   cortex_m4_configure ROOT BUILD_DIR [extra cmake arguments...]
cortex_m4_configure() {
  local root=$1 build=$2
  shift 2
  "$root/deploy/fetch_nanopb_source.sh"
  local nanopb_src=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}/nanopb-src
  # --fresh: a build directory configured with an older toolchain file
  # would keep its cached flags.
  cmake --fresh -S "$root" -B "$build" -G Ninja -DTINYFED_SDK_ONLY=ON \
    -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DCMAKE_TOOLCHAIN_FILE="$root/deploy/toolchains/arm-cortex-m4.cmake" \
    -DTINYFED_NANOPB_SOURCE_DIR="$nanopb_src" "$@" >/dev/null
}
