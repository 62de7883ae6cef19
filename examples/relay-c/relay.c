/*
 * relay.c — a relay in straight-line C on micro-threads: the model for C
 * and C++ authors of plugins that call other services. Each request is
 * sent to one fixed backend and the backend's answer goes back to the
 * client. It speaks the protocol of examples/echo-c:
 *
 *   frame   = 4-byte big-endian payload length, then the payload
 *   request = sent to the backend as it came
 *   reply   = the backend's answer frame as it came, or, when there is
 *             none, the frame "relay-error:<why>" (timeout, refused,
 *             closed, too-large, malformed, io, unsupported, ...)
 *
 * The point: spp_process below reads as blocking code ("call the backend,
 * wait for its answer, reply"). In a group with mode = "microthread"
 * every spp_process runs on its own micro-thread, and host->call suspends
 * only that request: one worker relays thousands of requests at once. The
 * host keeps a pooled keep-alive connection to the backend, and the
 * check function below tells it when an answer is complete. In a plain
 * group host->call returns SPP_ERR_UNSUPPORTED at once, and the client
 * gets "relay-error:unsupported".
 *
 * Build (the workspace does it in examples/relay-c/build.rs):
 *
 *   cc -shared -fPIC -O2 -Wall -Wextra -Werror -I plugin-api/include \
 *      -o libspp_relay_c.so examples/relay-c/relay.c
 *
 * `plugin_conf`: `addr=IPV4:PORT` (the backend; required in a worker),
 * `timeout_ms=N` (the whole call, default 500) and `max_payload=N` (bytes,
 * default 16 KiB, for requests and answers), separated by ',' or ' '.
 * Anything else makes spp_init fail.
 *
 * What a request costs: one micro-thread (the group's stack_size plus a
 * guard page, and the request's bytes) and one malloc'ed answer buffer of
 * 4 + max_payload bytes, freed before spp_process returns. The rules of
 * examples/sleep-echo-c/sleep_echo.c apply: state on the stack, check
 * host->size before using call, no big local arrays.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spp_plugin.h"

/* Bytes of the length prefix. */
#define RELAY_HEADER_LEN 4u
/* The largest payload accepted unless plugin_conf says otherwise. */
#define RELAY_DEFAULT_MAX_PAYLOAD ((uint64_t)16 << 10)
/* The largest max_payload accepted (a frame announces at most this). */
#define RELAY_MAX_MAX_PAYLOAD ((uint64_t)INT_MAX - RELAY_HEADER_LEN)
/* The whole call's bound unless plugin_conf says otherwise, ms. */
#define RELAY_DEFAULT_TIMEOUT_MS 500u
/* The longest timeout_ms accepted. */
#define RELAY_MAX_TIMEOUT_MS 60000u
/* Room for "relay-error:<why>" with its prefix. */
#define RELAY_ERROR_FRAME_CAP 64u

/* Process-wide settings, written once by spp_init; read-only afterwards. */
static const spp_host *g_host;
static uint64_t g_max_payload = RELAY_DEFAULT_MAX_PAYLOAD;
static uint64_t g_timeout_ms = RELAY_DEFAULT_TIMEOUT_MS;
static spp_addr g_backend;
static int g_has_backend;

/* Logs one line through the host. */
static void relay_log(int level, const char *text) {
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

/* Parses "IPV4:PORT" in [p, end) into *out. Returns 0, or -1. */
static int parse_addr(const char *p, const char *end, spp_addr *out) {
    char ip[INET_ADDRSTRLEN];
    const char *colon = memchr(p, ':', (size_t)(end - p));
    uint64_t port = 0;
    if (colon == NULL || (size_t)(colon - p) >= sizeof ip) {
        return -1;
    }
    memcpy(ip, p, (size_t)(colon - p));
    ip[colon - p] = '\0';
    if (parse_u64(colon + 1, end, &port) != 0 || port == 0 || port > UINT16_MAX) {
        return -1;
    }
    memset(out, 0, sizeof *out);
    if (inet_pton(AF_INET, ip, out->ip) != 1) {
        return -1;
    }
    out->family = SPP_AF_INET;
    out->port = (uint16_t)port;
    return 0;
}

/* Whether [p, end) starts with `key`; moves *value past it. */
static int has_key(const char *p, const char *end, const char *key, const char **value) {
    size_t key_len = strlen(key);
    if ((size_t)(end - p) < key_len || strncmp(p, key, key_len) != 0) {
        return 0;
    }
    *value = p + key_len;
    return 1;
}

/* Parses `addr=`, `timeout_ms=` and `max_payload=`. Returns 0, or -1 for
 * anything it does not understand or out of range. */
static int parse_conf(const char *conf) {
    const char *p = conf;
    while (*p != '\0') {
        size_t item_len = strcspn(p, ", ");
        const char *end = p + item_len;
        const char *value = NULL;
        if (item_len == 0) {
            p++;
            continue;
        }
        if (has_key(p, end, "addr=", &value)) {
            if (parse_addr(value, end, &g_backend) != 0) {
                return -1;
            }
            g_has_backend = 1;
        } else if (has_key(p, end, "timeout_ms=", &value)) {
            if (parse_u64(value, end, &g_timeout_ms) != 0 || g_timeout_ms == 0 ||
                g_timeout_ms > RELAY_MAX_TIMEOUT_MS) {
                return -1;
            }
        } else if (has_key(p, end, "max_payload=", &value)) {
            if (parse_u64(value, end, &g_max_payload) != 0 ||
                g_max_payload > RELAY_MAX_MAX_PAYLOAD) {
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
static int host_has_call(const spp_host *host) {
    return offsetof(spp_host, call) + sizeof host->call <= host->size && host->call != NULL;
}

/* The length of the first complete frame in `buf`: > 0 its length, 0 need
 * more bytes, < 0 malformed. `max_payload` points at the payload bound.
 * spp_input frames requests with it, and the host checks answers with it
 * (the spp_call_check contract is spp_input's). */
static int frame_len(void *max_payload, const uint8_t *buf, size_t len) {
    uint64_t bound = *(const uint64_t *)max_payload;
    if (len < RELAY_HEADER_LEN) {
        return 0;
    }
    uint64_t payload = ((uint64_t)buf[0] << 24) | ((uint64_t)buf[1] << 16) |
                       ((uint64_t)buf[2] << 8) | (uint64_t)buf[3];
    if (payload > bound) {
        return -1;
    }
    if ((uint64_t)len < RELAY_HEADER_LEN + payload) {
        return 0;
    }
    return (int)(RELAY_HEADER_LEN + payload);
}

/* The word an error frame carries for a call's result. */
static const char *call_error_name(int result) {
    switch (result) {
    case SPP_CALL_TIMEOUT:
        return "timeout";
    case SPP_CALL_REFUSED:
        return "refused";
    case SPP_CALL_CLOSED:
        return "closed";
    case SPP_CALL_TOO_LARGE:
        return "too-large";
    case SPP_CALL_NO_ROUTE:
        return "no-route";
    case SPP_CALL_MALFORMED:
        return "malformed";
    case SPP_CALL_BAD_ARGS:
        return "bad-args";
    case SPP_CALL_IO:
        return "io";
    case SPP_CALL_CANCELLED:
        return "cancelled";
    case SPP_ERR_UNSUPPORTED:
        return "unsupported";
    default:
        return "failed";
    }
}

/* Replies the frame "relay-error:<why>" to `flow`. Returns SPP_OK or the
 * reply's error. */
static int reply_error(uint64_t flow, int result) {
    uint8_t frame[RELAY_ERROR_FRAME_CAP];
    int n = snprintf((char *)frame + RELAY_HEADER_LEN, sizeof frame - RELAY_HEADER_LEN,
                     "relay-error:%s", call_error_name(result));
    if (n < 0 || (size_t)n >= sizeof frame - RELAY_HEADER_LEN) {
        return -1;
    }
    frame[0] = 0;
    frame[1] = 0;
    frame[2] = 0;
    frame[3] = (uint8_t)n;
    return g_host->reply(g_host->ctx, flow, frame, RELAY_HEADER_LEN + (size_t)n);
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
        relay_log(SPP_LOG_ERROR, "relay-c: bad plugin_conf (known: addr=IPV4:PORT, "
                                 "timeout_ms=1..60000, max_payload=N)");
        return 1;
    }
    if (host->role == SPP_ROLE_WORKER && !g_has_backend) {
        relay_log(SPP_LOG_ERROR, "relay-c: plugin_conf needs addr=IPV4:PORT in a worker");
        return 1;
    }
    relay_log(SPP_LOG_INFO, "relay-c: ready");
    return 0;
}

/* Required, proxy: how long is the first complete frame in `buf`? */
int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    return frame_len(&g_max_payload, buf, len);
}

/* Required, worker: call the backend, reply with its answer. Reads as
 * blocking code; on a micro-thread the worker serves other requests while
 * this one waits for the backend. */
int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    if (g_host == NULL) {
        return -1;
    }
    if (!host_has_call(g_host)) {
        return reply_error(conn->flow, SPP_ERR_UNSUPPORTED) == SPP_OK ? 0 : -1;
    }
    size_t cap = RELAY_HEADER_LEN + (size_t)g_max_payload;
    uint8_t *answer = malloc(cap);
    if (answer == NULL) {
        return -1;
    }

    spp_call call;
    memset(&call, 0, sizeof call);
    call.size = sizeof call;
    call.transport = SPP_CALL_TCP;
    call.timeout_ms = (uint32_t)g_timeout_ms;
    call.addr = g_backend;
    call.req = req;
    call.req_len = len;
    call.check = frame_len;
    call.check_user = &g_max_payload;
    call.answer = answer;
    call.answer_cap = cap;

    int rc = g_host->call(g_host->ctx, &call);
    if (rc == SPP_OK && call.answer_len <= cap) {
        rc = g_host->reply(g_host->ctx, conn->flow, answer, call.answer_len);
    } else {
        rc = reply_error(conn->flow, rc);
    }
    free(answer);
    return rc == SPP_OK ? 0 : -1;
}

/* Optional, both roles: the process is about to exit normally. */
void spp_fini(void) {
    relay_log(SPP_LOG_INFO, "relay-c: fini");
}
