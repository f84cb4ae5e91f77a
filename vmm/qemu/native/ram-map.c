/*
 * ram-map: maps a QEMU guest's RAM file into a Node process, so the engine reads and writes guest
 * memory where it lives instead of copying it through read(2) and write(2) (vmm/qemu/ram-map.ts).
 *
 * One function, mapFile(fd, length, writable): mmap(2) of `length` bytes of `fd` from offset 0,
 * shared, returned as an external ArrayBuffer. The mapping lives as long as the ArrayBuffer: V8's
 * finalizer unmaps it, so no JavaScript view can outlive it. Closing the descriptor afterwards is
 * fine (a mapping keeps its file). Throws an Error naming errno when the kernel refuses, and when
 * this Node does not allow external buffers.
 *
 * Built by ram-map.ts with the N-API headers of the Node that runs ferry; N-API's ABI is stable, so
 * one build serves every Node that loads it, in every worker thread (the module is context-aware).
 */
#include <errno.h>
#include <node_api.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

static void unmap(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

static napi_value fail(napi_env env, const char *what, int err) {
  char message[160];
  snprintf(message, sizeof message, "%s: %s", what, err ? strerror(err) : "refused");
  napi_throw_error(env, NULL, message);
  return NULL;
}

static napi_value map_file(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  int32_t fd;
  int64_t length;
  bool writable;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc != 3 ||
      napi_get_value_int32(env, argv[0], &fd) != napi_ok ||
      napi_get_value_int64(env, argv[1], &length) != napi_ok ||
      napi_get_value_bool(env, argv[2], &writable) != napi_ok || fd < 0 || length <= 0)
    return fail(env, "mapFile(fd, length, writable): bad arguments", 0);
  void *p = mmap(NULL, (size_t)length, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return fail(env, "mmap of the RAM file failed", errno);
  napi_value buffer;
  if (napi_create_external_arraybuffer(env, p, (size_t)length, unmap, (void *)(uintptr_t)length, &buffer) !=
      napi_ok) {
    munmap(p, (size_t)length);
    return fail(env, "this Node does not allow an external ArrayBuffer over the mapping", 0);
  }
  return buffer;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  if (napi_create_function(env, "mapFile", NAPI_AUTO_LENGTH, map_file, NULL, &fn) != napi_ok) return NULL;
  if (napi_set_named_property(env, exports, "mapFile", fn) != napi_ok) return NULL;
  return exports;
}
