# Finds the statically linked dependencies from Debian's packages and wraps
# them in one interface target, luacluster_deps. vendor/README.md says what
# each is, why, and how to upgrade it.

function(lc_find_static var name pkg)
  find_library(${var} NAMES ${name}
    PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE} /usr/lib /usr/local/lib)
  if(NOT ${var})
    message(FATAL_ERROR "${name} not found: install ${pkg} (vendor/setup.sh)")
  endif()
endfunction()

lc_find_static(LUAJIT_LIBRARY libluajit-5.1.a libluajit2-5.1-dev)
lc_find_static(LIBUV_LIBRARY libuv_a.a libuv1-dev)
lc_find_static(LUV_LIBRARY liblua5.1-luv.a lua-luv-dev)
lc_find_static(CJSON_LIBRARY liblua5.1-cjson.a lua-cjson-dev)
# zlib: WebSocket permessage-deflate (runtime/ws/deflate.c).
lc_find_static(ZLIB_LIBRARY libz.a zlib1g-dev)

find_path(LUAJIT_INCLUDE_DIR luajit.h PATH_SUFFIXES luajit-2.1)
find_path(LUV_INCLUDE_DIR luv/luv.h PATH_SUFFIXES lua5.1)
find_path(CJSON_INCLUDE_DIR lua-cjson.h PATH_SUFFIXES lua5.1)
if(NOT LUAJIT_INCLUDE_DIR OR NOT LUV_INCLUDE_DIR)
  message(FATAL_ERROR "LuaJIT or luv headers not found (vendor/setup.sh)")
endif()

# libpq's headers only (libpq-dev): the library itself is opened with
# dlopen at the first require('pg') (runtime/pg/libpq.c).
find_path(LIBPQ_INCLUDE_DIR libpq-fe.h PATH_SUFFIXES postgresql)
if(NOT LIBPQ_INCLUDE_DIR)
  message(FATAL_ERROR "libpq-fe.h not found: install libpq-dev (vendor/setup.sh)")
endif()

find_program(LUAJIT_EXECUTABLE NAMES luajit)
if(NOT LUAJIT_EXECUTABLE)
  message(FATAL_ERROR "luajit not found: install luajit2 (vendor/setup.sh)")
endif()

# llhttp: Node's parser, compiled in from Debian's node-llhttp sources.
set(LLHTTP_DIR /usr/share/llhttp)
find_path(LLHTTP_INCLUDE_DIR llhttp.h PATHS /usr/share/include/llhttp)
if(NOT EXISTS ${LLHTTP_DIR}/llhttp.c OR NOT LLHTTP_INCLUDE_DIR)
  message(FATAL_ERROR "llhttp sources not found: install node-llhttp")
endif()
set(LLHTTP_SOURCES ${LLHTTP_DIR}/llhttp.c ${LLHTTP_DIR}/api.c
  ${LLHTTP_DIR}/http.c)
# runtime/http/llhttp_at.c notes where each message head and message ends:
# llhttp.c calls it in place of its internal hooks, which it then calls.
add_library(llhttp STATIC ${LLHTTP_SOURCES}
  ${CMAKE_SOURCE_DIR}/runtime/http/llhttp_at.c)
set(LLHTTP_HOOKS
  llhttp__on_headers_complete=lc__llhttp_on_headers_complete
  llhttp__on_message_complete=lc__llhttp_on_message_complete)
set_source_files_properties(${LLHTTP_DIR}/llhttp.c PROPERTIES
  COMPILE_DEFINITIONS "${LLHTTP_HOOKS}")
target_include_directories(llhttp PUBLIC ${LLHTTP_INCLUDE_DIR})
# Generated code: its warnings are not ours to fix.
target_compile_options(llhttp PRIVATE -w -O2)

# OpenSSL 3 (libssl-dev), linked dynamically as nginx's is: libssl3 takes
# Debian's security updates without a rebuild, and the .deb depends on it.
find_package(OpenSSL 3.0 REQUIRED)

add_library(luacluster_deps INTERFACE)
target_include_directories(luacluster_deps INTERFACE
  ${LUAJIT_INCLUDE_DIR} ${LUV_INCLUDE_DIR} ${LUV_INCLUDE_DIR}/luv
  ${CJSON_INCLUDE_DIR} ${LIBPQ_INCLUDE_DIR})
target_link_libraries(luacluster_deps INTERFACE
  llhttp ${LUV_LIBRARY} ${CJSON_LIBRARY} ${LIBUV_LIBRARY} ${LUAJIT_LIBRARY}
  OpenSSL::SSL OpenSSL::Crypto ${ZLIB_LIBRARY} pthread dl rt m)
