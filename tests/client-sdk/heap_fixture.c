/* Deliberately allocates: the no-heap check must reject this library. */
#include <stdlib.h>

void *tinyfed_heap_fixture(size_t n) { return malloc(n); }
