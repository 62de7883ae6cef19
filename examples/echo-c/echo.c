/*
 * echo.c — the bundled echo plugin written in C: the model for C and C++
 * plugin authors. It speaks exactly the protocol of examples/echo (Rust):
 *
 *   frame   = 4-byte big-endian payload length, then the payload
 *   reply   = the same frame, byte for byte
 *   UDP     = one frame per datagram
 *
 * Build it as a shared object against the one header the project ships:
 *
 *   cc -shared -fPIC -O2 -Wall -Wextra -Werror -I plugin-api/include \
 *      -o libspp_echo_c.so examples/echo-c/echo.c
 *
 * (the workspace does this in examples/echo-c/build.rs) and point a group's
 * `plugin` (and/or `[proxy] plugin`) at the .so in spp.toml.
 *
 * `plugin_conf` may set `max_payload=N` (bytes); a frame announcing more is
 * malformed and closes its connection. Anything else makes spp_init fail, so
 * the process exits and `spp status` shows why.
 *
 * Rules every plugin follows (see spp_plugin.h for the full contract):
 *  - Export the hooks with the exact signatures of the header; including the
 *    header lets the compiler check them. Keep every helper `static` so the
 *    only exported symbols are the hooks.
 *  - Every pointer a hook receives is valid only during that call: copy what
 *    you want to keep. `host` (the services table) is the exception: it stays
 *    valid from spp_init until spp_fini returns.
 *  - Hooks run on the process's main thread and must not block: the worker
 *    serves one request at a time. Slow work goes to your own threads, which
 *    answer later with host->reply (deferred replies).
 *  - A C plugin cannot be "caught" like a Rust panic: a crash kills the
 *    worker (the controller restarts it and the proxy fails its in-flight
 *    requests at once). Validate input instead of trusting it.
 */
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spp_plugin.h"

/* The wrong-ABI test variant is this file compiled with
 * -DSPP_TEST_ABI_VERSION=99: the host must refuse to load it. */
#ifdef SPP_TEST_ABI_VERSION
#define ECHO_ABI_VERSION SPP_TEST_ABI_VERSION
#else
#define ECHO_ABI_VERSION SPP_PLUGIN_ABI_VERSION
#endif

/* Bytes of the length prefix. */
#define ECHO_HEADER_LEN 4u
/* The largest payload accepted unless plugin_conf says otherwise (64 MiB,
 * like the Rust echo). */
#define ECHO_DEFAULT_MAX_PAYLOAD ((size_t)64 << 20)

/* Process-wide plugin state, written once by spp_init on the main thread. */
static const spp_host *g_host;
static size_t g_max_payload = ECHO_DEFAULT_MAX_PAYLOAD;

/* Logs one line through the host (never printf: the host owns the log). */
static void echo_log(int level, const char *text) {
    if (g_host != NULL) {
        g_host->log(g_host->ctx, level, text, strlen(text));
    }
}

/* Parses `max_payload=N` (items separated by ',' or ' '). Returns 0 on
 * success, -1 for anything it does not understand. */
static int parse_conf(const char *conf, size_t *max_payload) {
    static const char key[] = "max_payload=";
    const char *p = conf;
    while (*p != '\0') {
        size_t item_len = strcspn(p, ", ");
        if (item_len == 0) {
            p++;
            continue;
        }
        if (item_len <= sizeof key - 1 || strncmp(p, key, sizeof key - 1) != 0) {
            return -1;
        }
        size_t value = 0;
        for (const char *d = p + sizeof key - 1; d < p + item_len; d++) {
            if (*d < '0' || *d > '9' || value > (SIZE_MAX - 9) / 10) {
                return -1;
            }
            value = value * 10 + (size_t)(*d - '0');
        }
        *max_payload = value;
        p += item_len;
    }
    return 0;
}

/* Required: the ABI version this plugin was built against. */
uint32_t spp_plugin_abi_version(void) {
    return ECHO_ABI_VERSION;
}

/* Optional, both roles. Keep the host table; check plugin_conf. A non-zero
 * return makes the process exit with that code (clamped to 1..=255). */
int spp_init(const spp_host *host, const char *conf) {
    if (host == NULL || conf == NULL) {
        return 1;
    }
    g_host = host;
    if (parse_conf(conf, &g_max_payload) != 0) {
        echo_log(SPP_LOG_ERROR, "echo-c: bad plugin_conf (known: max_payload=N)");
        return 1;
    }
    echo_log(SPP_LOG_INFO, host->role == SPP_ROLE_PROXY ? "echo-c: ready (proxy)" : "echo-c: ready (worker)");
    return 0;
}

/* Required, proxy: how long is the first complete frame in `buf`?
 * > 0 its length, 0 need more bytes, < 0 malformed (close). */
int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < ECHO_HEADER_LEN) {
        return 0;
    }
    size_t payload = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | (size_t)buf[3];
    /* The result is an int: refuse what it cannot express, and what the
     * operator's limit forbids. */
    if (payload > g_max_payload || payload > (size_t)INT_MAX - ECHO_HEADER_LEN) {
        return -1;
    }
    if (len < ECHO_HEADER_LEN + payload) {
        return 0;
    }
    return (int)(ECHO_HEADER_LEN + payload);
}

/* Required, worker: answer with the request itself. `req` points into the
 * shared-memory ring (no copy); host->reply copies it into the response
 * ring. A failed reply (ring full for too long) closes the connection. */
int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    if (g_host == NULL) {
        return -1;
    }
    int rc = g_host->reply(g_host->ctx, conn->flow, req, len);
    return rc == SPP_OK ? 0 : -1;
}

/* spp_route, spp_exception and spp_close are optional and left out: every
 * request goes to group 1, and a request that cannot be queued closes its
 * connection. */

/* Optional, both roles: the process is about to exit normally. */
void spp_fini(void) {
    echo_log(SPP_LOG_INFO, "echo-c: fini");
}
