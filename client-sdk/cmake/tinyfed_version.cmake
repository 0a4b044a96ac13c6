# Reads the SDK's version from client-sdk/include/tinyfed/version.h, where
# it is written once, into TINYFED_VERSION_FROM_HEADER (MAJOR.MINOR.PATCH).
# Included by the top-level CMakeLists.txt before project(), so the
# project's version, the package version file and the header the firmware
# compiles cannot disagree. Fails when the header's string does not match
# its numbers, or a number is missing.
set(tinyfed_version_header ${CMAKE_CURRENT_LIST_DIR}/../include/tinyfed/version.h)
set_property(DIRECTORY APPEND PROPERTY CMAKE_CONFIGURE_DEPENDS ${tinyfed_version_header})
file(STRINGS ${tinyfed_version_header} tinyfed_version_lines
     REGEX "^#define TINYFED_VERSION_(MAJOR|MINOR|PATCH|STRING) ")
foreach(part MAJOR MINOR PATCH STRING)
  set(tinyfed_version_${part} "")
  foreach(line IN LISTS tinyfed_version_lines)
    if(line MATCHES "^#define TINYFED_VERSION_${part} +\"?([0-9.]+)\"? *$")
      set(tinyfed_version_${part} ${CMAKE_MATCH_1})
    endif()
  endforeach()
  if(tinyfed_version_${part} STREQUAL "")
    message(FATAL_ERROR "${tinyfed_version_header}: no TINYFED_VERSION_${part}")
  endif()
endforeach()
set(TINYFED_VERSION_FROM_HEADER
    "${tinyfed_version_MAJOR}.${tinyfed_version_MINOR}.${tinyfed_version_PATCH}")
if(NOT tinyfed_version_STRING STREQUAL TINYFED_VERSION_FROM_HEADER)
  message(FATAL_ERROR "${tinyfed_version_header}: TINYFED_VERSION_STRING is "
          "\"${tinyfed_version_STRING}\" but the numbers say ${TINYFED_VERSION_FROM_HEADER}")
endif()
