/*
 * A proxy-wasm filter in C, written against the ABI 0.2.1 directly (no SDK, no libc): what a
 * filter author in C gets from the harness (host-harness/README.md). Rebuilt bit for bit by
 * build.sh; the .wasm is checked in so the test needs no C compiler.
 *
 * Behaviour: the plugin configuration is a header value added to every response
 * (`x-c-filter`); a request for `/blocked` gets a local 403; the root context logs each tick
 * (period 1 s) with a counter.
 */
#include <stdint.h>
#include <stddef.h>

#define IMPORT(name) __attribute__((import_module("env"), import_name(#name)))
#define EXPORT(name) __attribute__((export_name(#name)))

IMPORT(proxy_log) int32_t proxy_log(int32_t level, const char *msg, size_t len);
IMPORT(proxy_get_buffer_bytes)
int32_t proxy_get_buffer_bytes(int32_t type, int32_t start, int32_t max, char **ptr, size_t *len);
IMPORT(proxy_add_header_map_value)
int32_t proxy_add_header_map_value(int32_t map, const char *k, size_t kl, const char *v, size_t vl);
IMPORT(proxy_get_header_map_value)
int32_t proxy_get_header_map_value(int32_t map, const char *k, size_t kl, char **v, size_t *vl);
IMPORT(proxy_send_local_response)
int32_t proxy_send_local_response(int32_t status, const char *details, size_t dl, const char *body,
                                  size_t bl, const char *headers, size_t hl, int32_t grpc);
IMPORT(proxy_set_tick_period_milliseconds) int32_t proxy_set_tick_period_milliseconds(int32_t ms);

enum { LOG_INFO = 2, BUFFER_PLUGIN_CONFIGURATION = 7, MAP_REQUEST_HEADERS = 0,
       MAP_RESPONSE_HEADERS = 2, ACTION_CONTINUE = 0, ACTION_PAUSE = 1 };

/* Memory the host asks for: a bump allocator over pages grown on demand (never freed: a test
 * filter handles a few small buffers). */
extern unsigned char __heap_base;
static uintptr_t heap_top;

EXPORT(proxy_on_memory_allocate) void *proxy_on_memory_allocate(size_t size) {
    if (heap_top == 0) heap_top = (uintptr_t)&__heap_base;
    uintptr_t start = (heap_top + 7) & ~(uintptr_t)7;
    uintptr_t end = start + size;
    uintptr_t have = __builtin_wasm_memory_size(0) * 65536;
    if (end > have) {
        size_t pages = (end - have + 65535) / 65536;
        if (__builtin_wasm_memory_grow(0, pages) == (size_t)-1) return 0;
    }
    heap_top = end;
    return (void *)start;
}

EXPORT(proxy_abi_version_0_2_1) void proxy_abi_version_0_2_1(void) {}

static char *header_value;
static size_t header_len;
static uint32_t ticks;

static size_t cstrlen(const char *s) { size_t n = 0; while (s[n]) n++; return n; }
static int same(const char *a, const char *b, size_t n) {
    for (size_t i = 0; i < n; i++) if (a[i] != b[i]) return 0;
    return 1;
}
static void log_info(const char *s) { proxy_log(LOG_INFO, s, cstrlen(s)); }

EXPORT(proxy_on_context_create) void proxy_on_context_create(uint32_t id, uint32_t parent) {
    (void)id; (void)parent;
}

EXPORT(proxy_on_vm_start) int32_t proxy_on_vm_start(uint32_t root, uint32_t size) {
    (void)root; (void)size;
    return 1;
}

EXPORT(proxy_on_configure) int32_t proxy_on_configure(uint32_t root, uint32_t size) {
    (void)root;
    header_value = 0;
    header_len = 0;
    if (size > 0 &&
        proxy_get_buffer_bytes(BUFFER_PLUGIN_CONFIGURATION, 0, size, &header_value, &header_len) != 0) {
        log_info("c-filter: cannot read the configuration");
        return 0;
    }
    proxy_set_tick_period_milliseconds(1000);
    log_info("c-filter: configured");
    return 1;
}

EXPORT(proxy_on_tick) void proxy_on_tick(uint32_t root) {
    (void)root;
    char line[] = "c-filter: tick 0000000000";
    uint32_t n = ++ticks;
    for (int i = sizeof line - 2; i >= (int)(sizeof line - 11); i--) { line[i] = '0' + n % 10; n /= 10; }
    log_info(line);
}

EXPORT(proxy_on_request_headers)
int32_t proxy_on_request_headers(uint32_t ctx, uint32_t headers, uint32_t end) {
    (void)ctx; (void)headers; (void)end;
    char *path = 0;
    size_t len = 0;
    if (proxy_get_header_map_value(MAP_REQUEST_HEADERS, ":path", 5, &path, &len) == 0 &&
        len == 8 && same(path, "/blocked", 8)) {
        proxy_send_local_response(403, "", 0, "blocked by C", 12, 0, 0, -1);
        return ACTION_PAUSE;
    }
    return ACTION_CONTINUE;
}

EXPORT(proxy_on_response_headers)
int32_t proxy_on_response_headers(uint32_t ctx, uint32_t headers, uint32_t end) {
    (void)ctx; (void)headers; (void)end;
    if (header_len > 0)
        proxy_add_header_map_value(MAP_RESPONSE_HEADERS, "x-c-filter", 10, header_value, header_len);
    return ACTION_CONTINUE;
}

EXPORT(proxy_on_done) int32_t proxy_on_done(uint32_t ctx) { (void)ctx; return 1; }
EXPORT(proxy_on_log) void proxy_on_log(uint32_t ctx) { (void)ctx; }
EXPORT(proxy_on_delete) void proxy_on_delete(uint32_t ctx) { (void)ctx; }
