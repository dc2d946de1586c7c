// The C allocator's tuning knobs (glibc's mallopt), which Swift's Glibc module leaves out. Empty elsewhere.
#if defined(__linux__) && __has_include(<malloc.h>)
#include <malloc.h>
#endif
