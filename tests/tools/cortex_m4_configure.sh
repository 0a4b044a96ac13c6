# Sourced by the cortex_m4_*.sh scripts: configures a Cortex-M4 cross build
# of the SDK (nanopb's runtime and mbedTLS's SHA-256 from their cached
# Debian sources).
#   cortex_m4_configure ROOT BUILD_DIR [extra cmake arguments...]
cortex_m4_configure() {
  local root=$1 build=$2
  shift 2
  "$root/deploy/fetch_nanopb_source.sh"
  "$root/deploy/fetch_mbedtls_source.sh"
  local cache=${TINYFED_DATA_DIR:-${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tinyfed}
  # --fresh: a build directory configured with an older toolchain file
  # would keep its cached flags.
  cmake --fresh -S "$root" -B "$build" -G Ninja -DTINYFED_SDK_ONLY=ON \
    -DCMAKE_BUILD_TYPE=MinSizeRel \
    -DCMAKE_TOOLCHAIN_FILE="$root/deploy/toolchains/arm-cortex-m4.cmake" \
    -DTINYFED_NANOPB_SOURCE_DIR="$cache/nanopb-src" \
    -DTINYFED_MBEDTLS_SOURCE_DIR="$cache/mbedtls-src" "$@" >/dev/null
}
