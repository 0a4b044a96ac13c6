# Sourced by the cortex_m4_*.sh scripts: the SDK's footprint in a linked
# Cortex-M4 image, counted as that image minus a baseline image without
# the SDK (client-sdk/examples/footprint), both from the same build.

# footprint_symbol_size IMAGE NAME...: total size of the named symbols.
footprint_symbol_size() {
  local image=$1
  shift
  arm-none-eabi-nm -S --radix=d "$image" |
    awk -v names=" $* " 'NF == 4 && index(names, " " $4 " ") { total += $2 + 0 } END { print total + 0 }'
}

# footprint_flash IMAGE BASELINE: flash of the SDK, nanopb and the SDK's
# mbedTLS, constants and strings included: the image minus the baseline, less what else differs
# between them (the application's main, and the C library's memcpy/memset,
# which a firmware has anyway).
footprint_flash() {
  local image=$1 baseline=$2 text data btext bdata main_diff libc
  read -r text data _ < <(arm-none-eabi-size "$image" | tail -n 1)
  read -r btext bdata _ < <(arm-none-eabi-size "$baseline" | tail -n 1)
  main_diff=$(( $(footprint_symbol_size "$image" main) - $(footprint_symbol_size "$baseline" main) ))
  libc=$(( $(footprint_symbol_size "$image" memcpy memset) -
           $(footprint_symbol_size "$baseline" memcpy memset) ))
  echo $(( (text + data) - (btext + bdata) - main_diff - libc ))
}

# footprint_static_ram IMAGE BASELINE: initialized and zeroed data of the
# image minus the baseline's (the example's context, arena and buffer),
# less the served model's buffer, which footprint_serving_ram counts: the
# training RAM and the serving model's are two figures.
footprint_static_ram() {
  local image=$1 baseline=$2 data bss bdata bbss
  read -r _ data bss _ < <(arm-none-eabi-size "$image" | tail -n 1)
  read -r _ bdata bbss _ < <(arm-none-eabi-size "$baseline" | tail -n 1)
  echo $(( (data + bss) - (bdata + bbss) - $(footprint_serving_ram "$image") ))
}

# footprint_serving_ram IMAGE: bytes of the image's served-model buffer
# (serving_model, TINYFED_MODEL_SIZE of its head).
footprint_serving_ram() {
  footprint_symbol_size "$1" serving_model
}
