/*
 * behaviours.c — a test plugin for spp-worker's integration tests. The
 * first byte of a request picks what spp_process does; replies are raw
 * bytes (no framing), flows are whatever the test sends.
 *
 *   'e'  echo the request
 *   'm'  three replies: "1", "2", "3"
 *   'x'  return 1 (an error: the worker closes the flow)
 *   'p'  return SPP_HOOK_PANICKED (what a panicking Rust hook returns)
 *   'c'  host->close(flow)
 *   'z'  a zero-length reply (close after flush)
 *   'L'  reply 1 MiB (larger than the test ring), then reply "rc=<code>"
 *   'd'  reply "deferred:<rest>" later, from another thread
 *   'i'  reply "role=R group=G index=I abi=A"
 *   'w'  wait inside spp_process until the file named by the rest exists
 *        (bounded: WAIT_MAX_POLLS), then reply "woke" (or return -1)
 *   'k'  host->count(rest, 1), reply "rc=<code>"
 *   't'  host->record_latency(rest, LATENCY_SAMPLE_NS), reply "rc=<code>"
 *
 * spp_init with conf "fail=N" returns N. spp_fini replies "fini" to the
 * last flow it saw.
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "spp_plugin.h"

#define TOO_LARGE_BYTES ((size_t)1 << 20)
#define TEXT_MAX 128
#define PATH_MAX_BYTES 1024
/* 'w' looks for its file every WAIT_POLL_NS, at most WAIT_MAX_POLLS times (60 s). */
#define WAIT_POLL_NS 1000000L
#define WAIT_MAX_POLLS 60000
#define LATENCY_SAMPLE_NS 1500

static const spp_host *g_host;
static uint64_t g_last_flow;

struct deferred {
    uint64_t flow;
    size_t len;
    uint8_t bytes[];
};

uint32_t spp_plugin_abi_version(void) {
    return SPP_PLUGIN_ABI_VERSION;
}

int spp_init(const spp_host *host, const char *conf) {
    g_host = host;
    if (strncmp(conf, "fail=", 5) == 0) {
        return atoi(conf + 5);
    }
    return 0;
}

static int reply_text(uint64_t flow, const char *text) {
    return g_host->reply(g_host->ctx, flow, (const uint8_t *)text, strlen(text));
}

static void *deferred_main(void *arg) {
    struct deferred *d = arg;
    char text[TEXT_MAX];
    int n = snprintf(text, sizeof text, "deferred:%.*s", (int)d->len, (const char *)d->bytes);
    if (n > 0) {
        g_host->reply(g_host->ctx, d->flow, (const uint8_t *)text, (size_t)n < sizeof text ? (size_t)n : sizeof text - 1);
    }
    free(d);
    return NULL;
}

static int defer(uint64_t flow, const uint8_t *rest, size_t len) {
    struct deferred *d = malloc(sizeof *d + len);
    if (d == NULL) {
        return -1;
    }
    d->flow = flow;
    d->len = len;
    memcpy(d->bytes, rest, len);
    pthread_t thread;
    if (pthread_create(&thread, NULL, deferred_main, d) != 0) {
        free(d);
        return -1;
    }
    pthread_detach(thread);
    return 0;
}

/* Waits until the file named by `name` (not NUL-terminated) exists. */
static int wait_for_file(const uint8_t *name, size_t len) {
    char path[PATH_MAX_BYTES];
    if (len == 0 || len >= sizeof path) {
        return -1;
    }
    memcpy(path, name, len);
    path[len] = '\0';
    struct timespec poll = {0, WAIT_POLL_NS};
    for (int i = 0; i < WAIT_MAX_POLLS; i++) {
        if (access(path, F_OK) == 0) {
            return 0;
        }
        nanosleep(&poll, NULL);
    }
    return -1;
}

/* Whether the host table has the metric services (appended in ABI 1). */
static int has_metrics(void) {
    return g_host->size >= offsetof(spp_host, record_latency) + sizeof g_host->record_latency;
}

int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    uint64_t flow = conn->flow;
    char text[TEXT_MAX];
    g_last_flow = flow;
    if (len == 0) {
        return -1;
    }
    switch (req[0]) {
    case 'e':
        return g_host->reply(g_host->ctx, flow, req, len) == SPP_OK ? 0 : -1;
    case 'm':
        reply_text(flow, "1");
        reply_text(flow, "2");
        reply_text(flow, "3");
        return 0;
    case 'x':
        return 1;
    case 'p':
        return SPP_HOOK_PANICKED;
    case 'c':
        return g_host->close(g_host->ctx, flow) == SPP_OK ? 0 : -1;
    case 'z':
        return g_host->reply(g_host->ctx, flow, NULL, 0) == SPP_OK ? 0 : -1;
    case 'L': {
        uint8_t *big = calloc(1, TOO_LARGE_BYTES);
        if (big == NULL) {
            return -1;
        }
        int rc = g_host->reply(g_host->ctx, flow, big, TOO_LARGE_BYTES);
        free(big);
        snprintf(text, sizeof text, "rc=%d", rc);
        reply_text(flow, text);
        return 0;
    }
    case 'd':
        return defer(flow, req + 1, len - 1);
    case 'i':
        snprintf(text, sizeof text, "role=%u group=%u index=%u abi=%u", g_host->role, g_host->group,
                 g_host->worker_index, g_host->abi_version);
        reply_text(flow, text);
        return 0;
    case 'w':
        if (wait_for_file(req + 1, len - 1) != 0) {
            return -1;
        }
        reply_text(flow, "woke");
        return 0;
    case 'k':
    case 't': {
        if (!has_metrics()) {
            return -1;
        }
        const char *name = (const char *)req + 1;
        int rc = req[0] == 'k' ? g_host->count(g_host->ctx, name, len - 1, 1)
                               : g_host->record_latency(g_host->ctx, name, len - 1, LATENCY_SAMPLE_NS);
        snprintf(text, sizeof text, "rc=%d", rc);
        reply_text(flow, text);
        return 0;
    }
    default:
        return -1;
    }
}

void spp_fini(void) {
    reply_text(g_last_flow, "fini");
}
