#!/usr/bin/env bash
# Usage: check_no_heap.sh NM LIBRARY...
# Fails when any object in the libraries references a heap allocator.
set -euo pipefail
nm_tool=$1
shift
forbidden='^(malloc|calloc|realloc|free|aligned_alloc|posix_memalign|memalign|valloc|pvalloc|strdup|strndup|_Znwm|_Znam|_ZdlPv|_ZdaPv)$'
status=0
for lib in "$@"; do
  refs=$("$nm_tool" -u "$lib" 2>/dev/null | awk '{print $NF}' | grep -E "$forbidden" | sort -u || true)
  if [[ -n "$refs" ]]; then
    echo "FAIL: $lib references heap functions: $(echo $refs | tr '\n' ' ')"
    status=1
  else
    echo "ok: $lib references no heap function"
  fi
done
exit $status
