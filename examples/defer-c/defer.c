/*
 * defer.c — echo answered later by a thread of the plugin: the model for C
 * and C++ authors of async plugins (a group with mode = "async"). It speaks
 * the protocol of examples/echo-c:
 *
 *   frame   = 4-byte big-endian payload length, then the payload
 *   reply   = the same frame, byte for byte, after `delay_ms` milliseconds
 *
 * The point: spp_process returns at once. It calls host->defer, which
 * keeps the request in flight after spp_process returns, copies the bytes
 * and hands (token, flow, bytes) to the plugin's own thread. That thread
 * answers when it is ready with host->reply, then host->complete(token):
 * the worker meanwhile takes other requests (up to the group's
 * max_in_flight). Requests of one connection still run one at a time, in
 * order: the worker starts a connection's next request only after the
 * previous one completed, so pipelined answers keep their order.
 *
 * Two ways to answer, chosen by plugin_conf:
 *  - threaded (default): a thread of the plugin answers; spp_poll (below)
 *    answers SPP_ERR_UNSUPPORTED, so the worker never calls it again and
 *    sleeps on its own doorbell, which the host rings when the thread
 *    completes a request;
 *  - driven (`driven=1`): no thread; the worker drives the plugin through
 *    spp_poll on its own thread, the shape of a plugin with an event loop
 *    (an async runtime): spp_poll answers what is due, and when the worker
 *    is idle waits for the next due time or for the worker's doorbell
 *    (wake_fd), whichever comes first. On the worker's thread complete
 *    takes effect at once.
 *
 * In a group that is not async (or with an older host) host->defer answers
 * SPP_ERR_UNSUPPORTED; the plugin then answers at once, as a plain echo
 * (and `spp check` warns: the plugin exports spp_poll).
 *
 * Build (the workspace does it in examples/defer-c/build.rs):
 *
 *   cc -shared -fPIC -O2 -Wall -Wextra -Werror -pthread \
 *      -I plugin-api/include -o libspp_defer_c.so examples/defer-c/defer.c
 *
 * `plugin_conf`, items separated by ',' or ' ':
 *   delay_ms=N                the delay before each answer (default 10)
 *   driven=1                  answer inside spp_poll, on the worker's
 *                             thread (default 0: from a thread of its own)
 *   max_payload=N             the largest payload, bytes (default 64 KiB)
 *   never_complete_prefix=S   a request whose payload starts with S is
 *                             deferred and never completed (a test of the
 *                             host's expiry: task_timeout_ms plus
 *                             SPP_TASK_GRACE_MS later the host closes its
 *                             connection)
 * Anything else makes spp_init fail.
 *
 * Rules for async code, on top of those in examples/echo-c/echo.c:
 *  - Use services appended to the table only when `host->size` covers
 *    them (host_has_defer below).
 *  - Call host->defer inside spp_process, on the worker's thread. Every
 *    pointer spp_process gets dies when it returns: copy the bytes first.
 *  - Complete every deferred request exactly once, after its replies,
 *    within host->task_timeout_ms; a non-zero rc closes the connection.
 *  - host->reply and host->complete from your thread may answer
 *    SPP_ERR_FULL (the worker's deferred channel is full): retry a little
 *    later; the request stays in flight meanwhile.
 *  - SPP_ERR_UNKNOWN_TOKEN from complete: the request is gone (expired);
 *    drop what you kept for it.
 */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "spp_plugin.h"

/* Bytes of the length prefix. */
#define DEFER_HEADER_LEN 4u
/* The largest payload unless plugin_conf says otherwise. */
#define DEFER_DEFAULT_MAX_PAYLOAD ((uint64_t)64 << 10)
/* The delay before each answer unless plugin_conf says otherwise, ms. */
#define DEFER_DEFAULT_DELAY_MS 10u
/* The longest never_complete_prefix. */
#define DEFER_PREFIX_MAX 64u
/* Retries of a reply or complete that found the channel full, 1 ms apart. */
#define DEFER_FULL_RETRIES 1000u

/* One deferred request, waiting for the thread. */
typedef struct job {
    struct job *next;
    uint64_t token;
    uint64_t flow;
    uint64_t due_ms; /* CLOCK_MONOTONIC ms to answer at */
    size_t len;
    uint8_t bytes[]; /* the whole frame */
} job;

/* Process-wide settings, written once by spp_init; read-only afterwards. */
static const spp_host *g_host;
static uint64_t g_max_payload = DEFER_DEFAULT_MAX_PAYLOAD;
static uint64_t g_delay_ms = DEFER_DEFAULT_DELAY_MS;
static char g_never_prefix[DEFER_PREFIX_MAX + 1];
static size_t g_never_prefix_len;
static uint64_t g_driven;

/* The queue of deferred requests: FIFO (every job waits the same delay,
 * so due times are in order), guarded by g_lock. The thread takes from it
 * (threaded), or spp_poll on the worker's thread (driven). */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t g_wake = PTHREAD_COND_INITIALIZER;
static job *g_head;
static job *g_tail;
static int g_stop;
static int g_thread_started;
static pthread_t g_thread;

/* Logs one line through the host. */
static void defer_log(int level, const char *text) {
    if (g_host != NULL) {
        g_host->log(g_host->ctx, level, text, strlen(text));
    }
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(uint64_t ms) {
    struct timespec ts = {(time_t)(ms / 1000u), (long)(ms % 1000u) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* Parses the digits in [p, end) into *out. Returns 0, or -1. */
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

/* Whether the item [p, p + len) starts with `key`. */
static int has_key(const char *p, size_t len, const char *key, size_t key_len) {
    return len >= key_len && strncmp(p, key, key_len) == 0;
}

/* Parses plugin_conf. Returns 0, or -1 for anything it does not know. */
static int parse_conf(const char *conf) {
    static const char delay_key[] = "delay_ms=";
    static const char max_key[] = "max_payload=";
    static const char never_key[] = "never_complete_prefix=";
    static const char driven_key[] = "driven=";
    const char *p = conf;
    while (*p != '\0') {
        size_t item_len = strcspn(p, ", ");
        const char *end = p + item_len;
        if (item_len == 0) {
            p++;
            continue;
        }
        if (has_key(p, item_len, delay_key, sizeof delay_key - 1)) {
            if (parse_u64(p + sizeof delay_key - 1, end, &g_delay_ms) != 0) {
                return -1;
            }
        } else if (has_key(p, item_len, max_key, sizeof max_key - 1)) {
            if (parse_u64(p + sizeof max_key - 1, end, &g_max_payload) != 0) {
                return -1;
            }
        } else if (has_key(p, item_len, driven_key, sizeof driven_key - 1)) {
            if (parse_u64(p + sizeof driven_key - 1, end, &g_driven) != 0 || g_driven > 1) {
                return -1;
            }
        } else if (has_key(p, item_len, never_key, sizeof never_key - 1)) {
            size_t n = item_len - (sizeof never_key - 1);
            if (n == 0 || n > DEFER_PREFIX_MAX) {
                return -1;
            }
            memcpy(g_never_prefix, p + sizeof never_key - 1, n);
            g_never_prefix[n] = '\0';
            g_never_prefix_len = n;
        } else {
            return -1;
        }
        p = end;
    }
    return 0;
}

/* The size-gating rule of spp_plugin.h: defer, complete and
 * task_timeout_ms exist only in a table that reaches past them. */
static int host_has_defer(const spp_host *host) {
    return offsetof(spp_host, task_timeout_ms) + sizeof host->task_timeout_ms <= host->size &&
           host->defer != NULL && host->complete != NULL;
}

/* Calls reply, retrying while the deferred channel is full (on a thread of
 * the plugin only: on the worker's thread nothing makes room while we
 * wait, so a driven plugin tries once). */
static int reply_retrying(uint64_t flow, const uint8_t *data, size_t len) {
    unsigned tries = g_driven ? 1u : DEFER_FULL_RETRIES;
    int rc = SPP_ERR_FULL;
    for (unsigned i = 0; i < tries && rc == SPP_ERR_FULL; i++) {
        rc = g_host->reply(g_host->ctx, flow, data, len);
        if (rc == SPP_ERR_FULL && tries > 1) {
            sleep_ms(1);
        }
    }
    return rc;
}

/* Calls complete, retrying while the deferred channel is full. */
static int complete_retrying(uint64_t token, int result) {
    int rc = SPP_ERR_FULL;
    for (unsigned i = 0; i < DEFER_FULL_RETRIES && rc == SPP_ERR_FULL; i++) {
        rc = g_host->complete(g_host->ctx, token, result);
        if (rc == SPP_ERR_FULL) {
            sleep_ms(1);
        }
    }
    return rc;
}

/* Answers one job (reply first, then complete) and frees it. */
static void answer(job *j) {
    /* A failed reply (the connection is gone, say) still completes the
     * request: with a non-zero rc, which closes what is left. */
    int rc = reply_retrying(j->flow, j->bytes, j->len);
    if (complete_retrying(j->token, rc == SPP_OK ? 0 : -1) == SPP_ERR_UNKNOWN_TOKEN) {
        defer_log(SPP_LOG_WARN, "defer-c: a request expired before its answer");
    }
    free(j);
}

/* The plugin's thread (threaded): answers each job when it is due, until
 * spp_fini stops it. */
static void *answer_thread(void *unused) {
    (void)unused;
    pthread_mutex_lock(&g_lock);
    for (;;) {
        while (g_head == NULL && !g_stop) {
            pthread_cond_wait(&g_wake, &g_lock);
        }
        if (g_head == NULL) {
            break; /* stopping, nothing left */
        }
        job *j = g_head;
        g_head = j->next;
        if (g_head == NULL) {
            g_tail = NULL;
        }
        pthread_mutex_unlock(&g_lock);
        uint64_t now = now_ms();
        if (j->due_ms > now) {
            sleep_ms(j->due_ms - now);
        }
        answer(j);
        pthread_mutex_lock(&g_lock);
    }
    pthread_mutex_unlock(&g_lock);
    return NULL;
}

/* Required: the ABI version this plugin was built against. */
uint32_t spp_plugin_abi_version(void) {
    return SPP_PLUGIN_ABI_VERSION;
}

/* Optional, both roles: keep the host table, read plugin_conf; a worker
 * starts its answering thread. */
int spp_init(const spp_host *host, const char *conf) {
    if (host == NULL || conf == NULL) {
        return 1;
    }
    g_host = host;
    if (parse_conf(conf) != 0) {
        defer_log(SPP_LOG_ERROR, "defer-c: bad plugin_conf (known: delay_ms=N, max_payload=N, "
                                 "never_complete_prefix=S)");
        return 1;
    }
    if (host->role == SPP_ROLE_WORKER && !g_driven) {
        if (pthread_create(&g_thread, NULL, answer_thread, NULL) != 0) {
            defer_log(SPP_LOG_ERROR, "defer-c: cannot start the answering thread");
            return 1;
        }
        g_thread_started = 1;
    }
    defer_log(SPP_LOG_INFO, host_has_defer(host) && host->task_timeout_ms > 0
                                ? "defer-c: ready (async)"
                                : "defer-c: ready (answers at once: not an async group)");
    return 0;
}

/* Required, proxy: how long is the first complete frame in `buf`?
 * > 0 its length, 0 need more bytes, < 0 malformed (close). */
int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < DEFER_HEADER_LEN) {
        return 0;
    }
    uint64_t payload = ((uint64_t)buf[0] << 24) | ((uint64_t)buf[1] << 16) |
                       ((uint64_t)buf[2] << 8) | (uint64_t)buf[3];
    if (payload > g_max_payload || payload > (uint64_t)INT_MAX - DEFER_HEADER_LEN) {
        return -1;
    }
    if ((uint64_t)len < DEFER_HEADER_LEN + payload) {
        return 0;
    }
    return (int)(DEFER_HEADER_LEN + payload);
}

/* Required, worker: defer the request and hand a copy to the thread. */
int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    if (g_host == NULL) {
        return -1;
    }
    uint64_t token = 0;
    int rc = host_has_defer(g_host) ? g_host->defer(g_host->ctx, &token) : SPP_ERR_UNSUPPORTED;
    if (rc != SPP_OK) {
        /* Not an async group (or an older host): answer at once. */
        rc = g_host->reply(g_host->ctx, conn->flow, req, len);
        return rc == SPP_OK ? 0 : -1;
    }
    /* From here on the return value is ignored: complete decides. */
    if (g_never_prefix_len > 0 && len >= DEFER_HEADER_LEN + g_never_prefix_len &&
        memcmp(req + DEFER_HEADER_LEN, g_never_prefix, g_never_prefix_len) == 0) {
        return 0; /* deferred and forgotten: the host expires it */
    }
    job *j = malloc(sizeof *j + len);
    if (j == NULL) {
        /* On the worker's thread complete takes effect at once. */
        g_host->complete(g_host->ctx, token, -1);
        return -1;
    }
    j->next = NULL;
    j->token = token;
    j->flow = conn->flow;
    j->due_ms = now_ms() + g_delay_ms;
    j->len = len;
    memcpy(j->bytes, req, len);
    pthread_mutex_lock(&g_lock);
    if (g_tail != NULL) {
        g_tail->next = j;
    } else {
        g_head = j;
    }
    g_tail = j;
    pthread_cond_signal(&g_wake);
    pthread_mutex_unlock(&g_lock);
    return 0;
}

/* Answers every job due by `now` (driven, on the worker's thread); how many.
 * Sets *next_due to the next job's due time (UINT64_MAX: none). */
static unsigned answer_due(uint64_t now, uint64_t *next_due) {
    unsigned answered = 0;
    *next_due = UINT64_MAX;
    for (;;) {
        pthread_mutex_lock(&g_lock);
        job *j = g_head;
        if (j != NULL && j->due_ms <= now) {
            g_head = j->next;
            if (g_head == NULL) {
                g_tail = NULL;
            }
        } else {
            *next_due = j != NULL ? j->due_ms : UINT64_MAX;
            j = NULL;
        }
        pthread_mutex_unlock(&g_lock);
        if (j == NULL) {
            return answered;
        }
        answer(j);
        answered++;
    }
}

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Optional, worker, mode = "async": the worker drives the plugin. Threaded,
 * there is nothing to drive: SPP_ERR_UNSUPPORTED (never called again).
 * Driven: answer what is due; with wait_ms > 0 and nothing answered, wait
 * for the next due time (at most wait_ms) or for wake_fd (the worker's
 * doorbell: polled, never read), then answer what is due. *busy_ns gets
 * the time spent answering, not waiting. */
int spp_poll(int wake_fd, uint32_t wait_ms, uint64_t *busy_ns) {
    if (!g_driven) {
        return SPP_ERR_UNSUPPORTED;
    }
    uint64_t next_due;
    uint64_t started = now_ns();
    unsigned answered = answer_due(now_ms(), &next_due);
    uint64_t busy = now_ns() - started;
    if (answered == 0 && wait_ms > 0) {
        uint64_t now = now_ms();
        uint64_t wait = wait_ms;
        if (next_due != UINT64_MAX) {
            wait = next_due > now ? next_due - now : 0;
            wait = wait < wait_ms ? wait : wait_ms;
        }
        struct pollfd pfd = {wake_fd, POLLIN, 0};
        (void)poll(&pfd, 1, (int)wait);
        started = now_ns();
        answer_due(now_ms(), &next_due);
        busy += now_ns() - started;
    }
    if (busy_ns != NULL) {
        *busy_ns += busy;
    }
    return SPP_OK;
}

/* Optional, both roles: the process is about to exit normally. The
 * worker drained its requests first; the thread answers what is left and
 * stops. */
void spp_fini(void) {
    if (g_thread_started) {
        pthread_mutex_lock(&g_lock);
        g_stop = 1;
        pthread_cond_signal(&g_wake);
        pthread_mutex_unlock(&g_lock);
        pthread_join(g_thread, NULL);
        g_thread_started = 0;
    }
    defer_log(SPP_LOG_INFO, "defer-c: fini");
}
