# The web console (console/, docs/console.md): built with npm into the build tree and embedded in
# the gantry binary as the library gantry::console_assets (the table of server/console.h).
#
#   GANTRY_BUILD_CONSOLE  AUTO (default): on when Node.js >= 20.19 with npm is found, else off with
#                         a notice; ON: a missing or old Node.js is an error (CI); OFF: never.
#
# The chain, each step rerun only when its inputs change (so an unchanged console recompiles and
# relinks nothing):
#   package.json, package-lock.json  → npm ci in BUILD/console          (stamp: npm-ci.stamp)
#   console sources, api/openapi.json → npm run gen:api (the API's types) and npm run build
#                                      → BUILD/console/dist (tsc, vite, gzip twins)
#   dist                             → console_assets.cc (cmake/embed_console.cmake; rewritten
#                                      only when its text changes)
# Without the console the table is empty and gantry server answers / with a 404 saying so.

set(GANTRY_BUILD_CONSOLE AUTO CACHE STRING "Build the web console with npm and embed it: AUTO, ON or OFF")
set_property(CACHE GANTRY_BUILD_CONSOLE PROPERTY STRINGS AUTO ON OFF)

set(GANTRY_CONSOLE_SOURCE ${PROJECT_SOURCE_DIR}/console CACHE INTERNAL "")
set(GANTRY_CONSOLE_WORK ${PROJECT_BINARY_DIR}/console CACHE INTERNAL "")
set(GANTRY_CONSOLE OFF CACHE INTERNAL "whether the console is built")
if(NOT GANTRY_BUILD_CONSOLE STREQUAL "OFF")
  find_program(GANTRY_NPM npm)
  find_program(GANTRY_NODE node)
  set(why "")
  if(NOT GANTRY_NPM OR NOT GANTRY_NODE)
    set(why "node and npm were not found")
  else()
    execute_process(COMMAND ${GANTRY_NODE} --version OUTPUT_VARIABLE node_version OUTPUT_STRIP_TRAILING_WHITESPACE)
    if(NOT node_version MATCHES "^v([0-9]+\\.[0-9]+\\.[0-9]+)$")
      set(why "${GANTRY_NODE} --version did not answer a Node.js version")
    elseif(CMAKE_MATCH_1 VERSION_LESS 20.19)
      set(why "Node.js ${CMAKE_MATCH_1} is older than 20.19 (Vite 7 needs it)")
    endif()
  endif()
  if(why STREQUAL "")
    set(GANTRY_CONSOLE ON CACHE INTERNAL "whether the console is built")
  elseif(GANTRY_BUILD_CONSOLE STREQUAL "ON")
    message(FATAL_ERROR "GANTRY_BUILD_CONSOLE=ON but ${why}: install Node.js 20.19+ with npm, or configure with -DGANTRY_BUILD_CONSOLE=OFF")
  else()
    message(NOTICE "console: not built (${why}); gantry server will answer / with a 404 saying so. "
                   "Install Node.js 20.19+ with npm and reconfigure to embed it.")
  endif()
endif()

# Defines gantry::console_assets.
function(gantry_console_assets)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/console_assets.cc)
  set(embed ${PROJECT_SOURCE_DIR}/cmake/embed_console.cmake)
  if(GANTRY_CONSOLE)
    set(src ${GANTRY_CONSOLE_SOURCE})
    set(work ${GANTRY_CONSOLE_WORK})
    file(GLOB_RECURSE sources CONFIGURE_DEPENDS ${src}/src/* ${src}/e2e/* ${src}/scripts/*)
    set(config ${src}/index.html ${src}/tsconfig.json ${src}/vite.config.ts ${src}/playwright.config.ts)
    # Never a browser download: the browser tests use Debian's chromium (test/console).
    set(npm ${CMAKE_COMMAND} -E env PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 ${GANTRY_NPM})
    add_custom_command(OUTPUT ${work}/npm-ci.stamp
      COMMAND ${CMAKE_COMMAND} -E make_directory ${work}
      COMMAND ${CMAKE_COMMAND} -E copy ${src}/package.json ${src}/package-lock.json ${work}/
      COMMAND ${npm} ci --no-audit --no-fund --loglevel=error
      COMMAND ${CMAKE_COMMAND} -E touch ${work}/npm-ci.stamp
      DEPENDS ${src}/package.json ${src}/package-lock.json
      WORKING_DIRECTORY ${work}
      COMMENT "console: npm ci"
      VERBATIM)
    # The sources are copied afresh (a file deleted in console/ must not linger in the build).
    add_custom_command(OUTPUT ${work}/dist/index.html
      COMMAND ${CMAKE_COMMAND} -E rm -rf ${work}/src ${work}/e2e ${work}/scripts ${work}/dist
      COMMAND ${CMAKE_COMMAND} -E copy_directory ${src}/src ${work}/src
      COMMAND ${CMAKE_COMMAND} -E copy_directory ${src}/e2e ${work}/e2e
      COMMAND ${CMAKE_COMMAND} -E copy_directory ${src}/scripts ${work}/scripts
      COMMAND ${CMAKE_COMMAND} -E copy ${config} ${work}/
      COMMAND ${CMAKE_COMMAND} -E env GANTRY_OPENAPI=${PROJECT_SOURCE_DIR}/api/openapi.json ${GANTRY_NPM} run --silent gen:api
      COMMAND ${npm} run --silent build
      DEPENDS ${work}/npm-ci.stamp ${sources} ${config} ${PROJECT_SOURCE_DIR}/api/openapi.json
      WORKING_DIRECTORY ${work}
      COMMENT "console: npm run build"
      VERBATIM)
    add_custom_command(OUTPUT ${out}
      COMMAND ${CMAKE_COMMAND} -DDIR=${work}/dist -DOUT=${out} -P ${embed}
      DEPENDS ${work}/dist/index.html ${embed}
      COMMENT "console: embedding the built files"
      VERBATIM)
  else()
    # The empty table, made at configure time.
    execute_process(COMMAND ${CMAKE_COMMAND} -DDIR= -DOUT=${out} -P ${embed} COMMAND_ERROR_IS_FATAL ANY)
  endif()
  gantry_cc_library(NAME console_assets SRCS ${out})
endfunction()
