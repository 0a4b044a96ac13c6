/* The SDK's version: the one place it is written. The build reads it
 * (client-sdk/cmake/tinyfed_version.cmake) for project(tinyfed VERSION ...)
 * and the package's tinyfedConfigVersion.cmake, so this header, the CMake
 * package and the library always agree. Kept as a source file rather than
 * generated so that a firmware build that takes the sources without CMake
 * (an IDE project, a Makefile) still compiles tinyfed.h.
 *
 * Compatibility while the major version is 0: a new minor version may change
 * the API, the ABI or the wire; a new patch version changes none of them.
 * Compare versions at compile time with TINYFED_VERSION_NUMBER, e.g.
 *   #if TINYFED_VERSION_NUMBER < 10000  // older than 0.1.0
 */
#ifndef TINYFED_VERSION_H_
#define TINYFED_VERSION_H_

#define TINYFED_VERSION_MAJOR 0
#define TINYFED_VERSION_MINOR 1
#define TINYFED_VERSION_PATCH 0
/* "MAJOR.MINOR.PATCH": the configuration fails if it disagrees with the
 * three numbers above. */
#define TINYFED_VERSION_STRING "0.1.0"
/* MAJOR * 10000 + MINOR * 100 + PATCH (minor and patch stay below 100). */
#define TINYFED_VERSION_NUMBER \
  (TINYFED_VERSION_MAJOR * 10000 + TINYFED_VERSION_MINOR * 100 + TINYFED_VERSION_PATCH)

#endif /* TINYFED_VERSION_H_ */
