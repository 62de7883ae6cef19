/*
 * sleep_echo.c — echo after a sleep, on micro-threads: the model for C and
 * C++ authors of plugins that wait (for a timer today, for other services
 * with the same shape). It speaks the protocol of examples/echo-c:
 *
 *   frame   = 4-byte big-endian payload length, then the payload
 *   reply   = the same frame, byte for byte, after `sleep_ms` milliseconds
 *   UDP     = one frame per datagram
 *
 * The point: spp_process below is plain straight-line C that looks
 * blocking ("sleep, then answer"). In a group with mode = "microthread"
 * every spp_process runs on its own micro-thread, and host->sleep suspends
 * only that request: one worker answers thousands of sleeping requests at
 * once. In a plain group (or outside spp_process) host->sleep returns
 * SPP_ERR_UNSUPPORTED at once instead of blocking the worker by surprise;
 * this plugin then answers the frame "unsupported".
 *
 * Build (the workspace does it in examples/sleep-echo-c/build.rs):
 *
 *   cc -shared -fPIC -O2 -Wall -Wextra -Werror -I plugin-api/include \
 *      -o libspp_sleep_echo_c.so examples/sleep-echo-c/sleep_echo.c
 *
 * `plugin_conf`: `sleep_ms=N` (default 100) and `max_payload=N` (bytes,
 * default 64 MiB), separated by ',' or ' '. Anything else makes spp_init
 * fail.
 *
 * Rules for micro-thread code, on top of those in examples/echo-c/echo.c:
 *  - Use host services that appeared after ABI 1's first table only when
 *    `host->size` covers them (see host_has_sleep): an older host built a
 *    shorter table.
 *  - Keep per-request state on the stack (locals), never in globals: while
 *    one request is suspended in host->sleep, others run spp_process.
 *  - `req` stays valid for the whole of spp_process, across host->sleep;
 *    copy what you keep beyond it.
 *  - The micro-thread stack is small (the group's stack_size, 64 KiB by
 *    default): no big local arrays, no deep recursion.
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "spp_plugin.h"

/* Bytes of the length prefix. */
#define SLEEP_ECHO_HEADER_LEN 4u
/* The largest payload accepted unless plugin_conf says otherwise. */
#define SLEEP_ECHO_DEFAULT_MAX_PAYLOAD ((uint64_t)64 << 20)
/* The sleep before each answer unless plugin_conf says otherwise, ms. */
#define SLEEP_ECHO_DEFAULT_SLEEP_MS 100u

/* The answer where the host cannot sleep: a frame holding "unsupported". */
static const uint8_t UNSUPPORTED_FRAME[] = {0, 0, 0, 11, 'u', 'n', 's', 'u', 'p', 'p',
                                            'o', 'r', 't', 'e', 'd'};

/* Process-wide settings, written once by spp_init; read-only afterwards. */
static const spp_host *g_host;
static uint64_t g_max_payload = SLEEP_ECHO_DEFAULT_MAX_PAYLOAD;
static uint64_t g_sleep_ms = SLEEP_ECHO_DEFAULT_SLEEP_MS;

/* Logs one line through the host. */
static void sleep_echo_log(int level, const char *text) {
    if (g_host != NULL) {
        g_host->log(g_host->ctx, level, text, strlen(text));
    }
}

/* Parses the digits in [p, end) into *out. Returns 0, or -1 if they are not
 * a number that fits. */
static int parse_u64(const char *p, const char *end, uint64_t *out) {
    uint64_t value = 0;
    if (p == end) {
        return -1;
    }
    for (; p < end; p++) {
        if (*p < '0' || *p > '9' || value > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        value = value * 10 + (uint64_t)(*p - '0');
    }
    *out = value;
    return 0;
}

/* Parses `sleep_ms=N` and `max_payload=N`. Returns 0, or -1 for anything
 * it does not understand. */
static int parse_conf(const char *conf) {
    static const char sleep_key[] = "sleep_ms=";
    static const char max_key[] = "max_payload=";
    const char *p = conf;
    while (*p != '\0') {
        size_t item_len = strcspn(p, ", ");
        const char *end = p + item_len;
        if (item_len == 0) {
            p++;
            continue;
        }
        if (item_len >= sizeof sleep_key - 1 && strncmp(p, sleep_key, sizeof sleep_key - 1) == 0) {
            if (parse_u64(p + sizeof sleep_key - 1, end, &g_sleep_ms) != 0) {
                return -1;
            }
        } else if (item_len >= sizeof max_key - 1 && strncmp(p, max_key, sizeof max_key - 1) == 0) {
            if (parse_u64(p + sizeof max_key - 1, end, &g_max_payload) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
        p = end;
    }
    return 0;
}

/* The size-gating rule of spp_plugin.h: a service may be called only when
 * the table the host built (host->size bytes) reaches past its slot. */
static int host_has_sleep(const spp_host *host) {
    return offsetof(spp_host, sleep) + sizeof host->sleep <= host->size && host->sleep != NULL;
}

/* Required: the ABI version this plugin was built against. */
uint32_t spp_plugin_abi_version(void) {
    return SPP_PLUGIN_ABI_VERSION;
}

/* Optional, both roles: keep the host table, read plugin_conf. */
int spp_init(const spp_host *host, const char *conf) {
    if (host == NULL || conf == NULL) {
        return 1;
    }
    g_host = host;
    if (parse_conf(conf) != 0) {
        sleep_echo_log(SPP_LOG_ERROR,
                       "sleep-echo-c: bad plugin_conf (known: sleep_ms=N, max_payload=N)");
        return 1;
    }
    sleep_echo_log(SPP_LOG_INFO, "sleep-echo-c: ready");
    return 0;
}

/* Required, proxy: how long is the first complete frame in `buf`?
 * > 0 its length, 0 need more bytes, < 0 malformed (close). */
int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < SLEEP_ECHO_HEADER_LEN) {
        return 0;
    }
    uint64_t payload = ((uint64_t)buf[0] << 24) | ((uint64_t)buf[1] << 16) |
                       ((uint64_t)buf[2] << 8) | (uint64_t)buf[3];
    if (payload > g_max_payload || payload > (uint64_t)INT_MAX - SLEEP_ECHO_HEADER_LEN) {
        return -1;
    }
    if ((uint64_t)len < SLEEP_ECHO_HEADER_LEN + payload) {
        return 0;
    }
    return (int)(SLEEP_ECHO_HEADER_LEN + payload);
}

/* Required, worker: sleep, then answer with the request itself. Reads as
 * blocking code; on a micro-thread the worker serves other requests while
 * this one sleeps. */
int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    if (g_host == NULL) {
        return -1;
    }
    int rc = host_has_sleep(g_host) ? g_host->sleep(g_host->ctx, g_sleep_ms) : SPP_ERR_UNSUPPORTED;
    if (rc == SPP_ERR_UNSUPPORTED) {
        /* Plain mode (or an older host): say so, at once. */
        rc = g_host->reply(g_host->ctx, conn->flow, UNSUPPORTED_FRAME, sizeof UNSUPPORTED_FRAME);
        return rc == SPP_OK ? 0 : -1;
    }
    if (rc != SPP_OK) {
        return -1;
    }
    rc = g_host->reply(g_host->ctx, conn->flow, req, len);
    return rc == SPP_OK ? 0 : -1;
}

/* Optional, both roles: the process is about to exit normally. */
void spp_fini(void) {
    sleep_echo_log(SPP_LOG_INFO, "sleep-echo-c: fini");
}
