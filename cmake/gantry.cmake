# Target helpers in the Abseil style: one module = one directory = one target gantry::<module>.
#
#   gantry_cc_library(NAME base SRCS a.cc b.cc DEPS fmt::fmt)
#   gantry_cc_test(NAME base_status_test SRCS status_test.cc DEPS gantry::base [LABELS unit])
#   gantry_cc_binary(NAME gantry SRCS main.cc DEPS gantry::cli)

set(GANTRY_WARNINGS -Wall -Wextra -Wpedantic $<$<CXX_COMPILER_ID:GNU>:-Wshadow=local> -Wnon-virtual-dtor -Wimplicit-fallthrough
    # GCC 12 warns on designated initializers that leave fields at their defaults, the point of them.
    -Wno-missing-field-initializers
    # Clang checks the lock annotations of base/thread_annotations.h (GUARDED_BY, REQUIRES, ...).
    $<$<CXX_COMPILER_ID:Clang>:-Wthread-safety>)
if(GANTRY_WERROR)
  list(APPEND GANTRY_WARNINGS -Werror)
endif()

# Under clang, make sure the annotations are live: a write to a GUARDED_BY member without its lock
# must not compile. (Should the macros ever expand to nothing, the tsa build would pass vacuously.)
if(CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  include(CheckCXXSourceCompiles)
  set(CMAKE_REQUIRED_FLAGS "-Wthread-safety -Werror")
  set(CMAKE_REQUIRED_INCLUDES ${PROJECT_SOURCE_DIR}/src)
  check_cxx_source_compiles([[
    #include "base/mutex.h"
    struct S { gantry::Mutex mu; int n GUARDED_BY(mu) = 0; };
    int main() { S s; s.n = 1; }]] GANTRY_UNLOCKED_WRITE_COMPILES)
  unset(CMAKE_REQUIRED_FLAGS)
  unset(CMAKE_REQUIRED_INCLUDES)
  if(GANTRY_UNLOCKED_WRITE_COMPILES)
    message(FATAL_ERROR "clang's -Wthread-safety does not reject an unlocked write to a GUARDED_BY "
                        "member: check src/base/thread_annotations.h")
  endif()
endif()

# Extra options for the sources of test binaries only. The ci preset compiles them at -O0: the code
# under test is in the libraries, still optimised, and a test file's own code costs GCC nearly
# twice as much at -O1 (api_v1_test.cc: 31 s at -O1, 20 s at -O0) for no gain in what it checks.
set(GANTRY_TEST_COMPILE_OPTIONS "" CACHE STRING "Extra compile options for test sources, e.g. -O0")

# Unity builds for the ci preset: CMake compiles each library's and test's sources as one
# translation unit, so the headers every file includes are parsed, and their templates instantiated
# and emitted, once per target instead of once per file. Measured with GCC 12 at -Og, every library
# from empty without ccache: 1,184 s of CPU file by file, 592 s in batches of 8, 446 s whole.
# Sources must therefore not clash inside their target: no two files of one library or test may
# define the same name in an anonymous namespace (give it a more specific name, or share it through
# a header). The tsa preset is a unity build too (its syntax-only pass over the libraries the fuzz
# build leaves: 468 s of CPU file by file, 116 s as units). Only the default and fuzz presets still
# compile each file on its own, so a file that compiles only thanks to what the other files of its
# target include is caught in CI only among the libraries the fuzz targets link.
option(GANTRY_UNITY_BUILD "Compile each library's and test's sources in batches (unity build)" OFF)
set(GANTRY_UNITY_BATCH_SIZE 0 CACHE STRING "Sources per batch of a unity build (0: a whole target in one)")
function(gantry_unity target)
  if(GANTRY_UNITY_BUILD)
    set_target_properties(${target} PROPERTIES UNITY_BUILD ON UNITY_BUILD_BATCH_SIZE ${GANTRY_UNITY_BATCH_SIZE})
    # A type from a file's anonymous namespace held by a member of a named class is fine in that
    # file, but GCC warns once the file is #included by the batch.
    target_compile_options(${target} PRIVATE $<$<CXX_COMPILER_ID:GNU>:-Wno-subobject-linkage>)
  endif()
endfunction()

if(GANTRY_SANITIZE)
  add_compile_options(-fsanitize=${GANTRY_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${GANTRY_SANITIZE})
endif()

function(gantry_cc_library)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS;PRIVATE_DEPS" ${ARGN})
  add_library(gantry_${A_NAME} STATIC ${A_SRCS})
  add_library(gantry::${A_NAME} ALIAS gantry_${A_NAME})
  target_include_directories(gantry_${A_NAME} PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_compile_options(gantry_${A_NAME} PRIVATE ${GANTRY_WARNINGS})
  if(GANTRY_BUILD_FUZZ)
    # Coverage feedback for libFuzzer inside every library: the parsers a target fuzzes live there,
    # and without it libFuzzer sees only the target's own few branches.
    target_compile_options(gantry_${A_NAME} PRIVATE -fsanitize=fuzzer-no-link)
  endif()
  target_link_libraries(gantry_${A_NAME} PUBLIC ${A_DEPS} PRIVATE ${A_PRIVATE_DEPS})
  gantry_unity(gantry_${A_NAME})
  set_property(GLOBAL APPEND PROPERTY GANTRY_LIBRARIES gantry_${A_NAME})
endfunction()

# Unit tests default to the label "unit" and must need no server; integration tests say so.
function(gantry_cc_test)
  cmake_parse_arguments(A "" "NAME;TIMEOUT" "SRCS;DEPS;LABELS" ${ARGN})
  if(NOT GANTRY_BUILD_TESTS)
    return()
  endif()
  if(NOT A_LABELS)
    set(A_LABELS unit)
  endif()
  if(NOT A_TIMEOUT)
    set(A_TIMEOUT 300)
  endif()
  if(GANTRY_SANITIZE)
    # Debug builds under a sanitizer run several times slower (oci_image_test: 250 s under ASan on
    # a loaded 2-core machine, 4 s in the default build).
    math(EXPR A_TIMEOUT "${A_TIMEOUT} * 4")
  endif()
  add_executable(${A_NAME} ${A_SRCS})
  target_compile_options(${A_NAME} PRIVATE ${GANTRY_WARNINGS} ${GANTRY_TEST_COMPILE_OPTIONS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS} GTest::gmock GTest::gtest_main)
  gantry_unity(${A_NAME})
  add_test(NAME ${A_NAME} COMMAND ${A_NAME} WORKING_DIRECTORY ${CMAKE_CURRENT_SOURCE_DIR})
  set_tests_properties(${A_NAME} PROPERTIES LABELS "${A_LABELS}" TIMEOUT ${A_TIMEOUT}
    ENVIRONMENT "GANTRY_SOURCE_DIR=${PROJECT_SOURCE_DIR}")
endfunction()

function(gantry_cc_binary)
  cmake_parse_arguments(A "" "NAME" "SRCS;DEPS" ${ARGN})
  add_executable(${A_NAME} ${A_SRCS})
  target_compile_options(${A_NAME} PRIVATE ${GANTRY_WARNINGS})
  target_link_libraries(${A_NAME} PRIVATE ${A_DEPS})
endfunction()
