#!/usr/bin/env bash
# Usage: check_no_heap.sh NM OBJDUMP LIBRARY...
# Fails when any object in the libraries references a heap allocator, and
# when it cannot tell: a library that is missing, that nm cannot read, that
# has no symbols at all, or that holds LTO bytecode (nm then lists the
# bytecode's symbol table through the LTO plugin, which leaves out calls to
# built-in functions such as malloc, so a reference would go unseen).
set -euo pipefail
if [[ $# -lt 3 ]]; then
  echo "usage: check_no_heap.sh NM OBJDUMP LIBRARY..." >&2
  exit 2
fi
nm_tool=$1
objdump_tool=$2
shift 2
forbidden='^(malloc|calloc|realloc|free|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|strdup|strndup|_Znwm|_Znam|_ZdlPv|_ZdaPv)$'
status=0
for lib in "$@"; do
  if [[ ! -r "$lib" ]]; then
    echo "FAIL: $lib: cannot read it (missing?), so cannot check it"
    status=1
    continue
  fi
  if ! all=$("$nm_tool" "$lib" 2>&1); then
    echo "FAIL: $lib: nm cannot read it, so cannot check it: $(echo $all | head -c 200)"
    status=1
    continue
  fi
  if ! grep -qE '^[0-9a-fA-F]* *[A-Za-z] ' <<<"$all"; then
    echo "FAIL: $lib: no symbols at all, so nothing to check (an empty library?)"
    status=1
    continue
  fi
  if "$objdump_tool" -h "$lib" 2>/dev/null | grep -q '\.gnu\.lto_'; then
    echo "FAIL: $lib: holds LTO bytecode, whose references nm does not list; check a build without -flto"
    status=1
    continue
  fi
  refs=$("$nm_tool" -u "$lib" | awk '{print $NF}' | grep -E "$forbidden" | sort -u || true)
  if [[ -n "$refs" ]]; then
    echo "FAIL: $lib references heap functions: $(echo $refs | tr '\n' ' ')"
    status=1
  else
    echo "ok: $lib references no heap function"
  fi
done
exit $status
