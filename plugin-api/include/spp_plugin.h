/*
 * spp_plugin.h — the spp business plugin ABI, version 1.
 *
 * A plugin is a shared object (.so) that the spp proxy and workers dlopen.
 * It exports plain C functions named below. Only `spp_plugin_abi_version`,
 * `spp_input` and `spp_process` are required; every other hook is optional
 * and looked up by name.
 *
 *   proxy:  spp_init -> { spp_input, spp_route, spp_exception, spp_close }* -> spp_fini
 *   worker: spp_init -> { spp_process }* -> spp_fini
 *
 * Both roles load the same kind of object (often the very same file); a hook
 * is only called in the role listed next to it.
 *
 * Threading: every hook is called on the process's main thread. The host
 * services in `spp_host` may be called from the hook, or later from any
 * thread of a worker (deferred replies).
 *
 * Memory: every pointer handed to a hook is valid only during that call.
 * The `spp_host` table stays valid from spp_init until spp_fini returns.
 *
 * Processes: each worker is its own process with its own memory; so is the
 * proxy. A global variable of the plugin exists once per worker, and no
 * worker sees another's. Requests of one flow are not pinned to one
 * worker, so state kept in a worker's memory is seen only by the requests
 * that worker happens to serve; when a group scales (between min_workers
 * and max_workers), a new worker starts empty and a retired worker's state
 * is lost. Keep shared state outside (a store the workers call), or run
 * the group with one worker (min_workers = max_workers = 1). A plugin that
 * keeps such state declares it by exporting `spp_plugin_stateful` (below):
 * `spp check` and `spp start` then warn about a group of it whose
 * min_workers != max_workers.
 *
 * spp_init's refusal: a non-zero return from spp_init makes the process
 * exit with that code clamped to 1..=255 (so -1 exits 1, 300 exits 255);
 * the controller logs "spp_init returned N" and retries with back-off like
 * any worker that cannot start; during `spp start` it fails the start.
 * `spp check` (and start/reload's own check) calls spp_init and spp_fini of
 * every plugin in a throw-away process first, with the role's real conf
 * and a host table whose reply/close answer SPP_ERR_UNSUPPORTED and whose
 * log writes to the check's output: a plugin that cannot initialize fails
 * the check, naming the file, the role and the code. So spp_init must not
 * assume it runs only once per host, nor only in the serving process.
 */
#ifndef SPP_PLUGIN_H
#define SPP_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The ABI version this header describes. Export it from
 * `spp_plugin_abi_version`; the host refuses any other value. */
#define SPP_PLUGIN_ABI_VERSION 1u

/* The group a request goes to when the plugin exports no spp_route. */
#define SPP_DEFAULT_GROUP 1u

/* ---- connection info ---------------------------------------------------- */

#define SPP_PROTO_TCP 0u
#define SPP_PROTO_UDP 1u

#define SPP_AF_INET 4u
#define SPP_AF_INET6 6u

/* An IPv4 or IPv6 socket address, in network byte order for `ip`. */
typedef struct spp_addr {
    uint8_t family;   /* SPP_AF_INET or SPP_AF_INET6 */
    uint8_t _pad;
    uint16_t port;    /* host byte order */
    uint32_t scope_id;/* IPv6 scope id, 0 for IPv4 */
    uint8_t ip[16];   /* IPv4 uses the first 4 bytes */
} spp_addr;

/* Everything the host knows about the connection a request came from. */
typedef struct spp_conn_info {
    /* Identifies the connection (TCP) or the request's sender (UDP). Never
     * reused for another connection while this host runs: a reply to a
     * closed connection's flow is dropped, never sent to a newcomer. */
    uint64_t flow;
    /* Receive time of the request's last byte, microseconds since the Unix
     * epoch. */
    uint64_t recv_time_us;
    uint8_t proto;      /* SPP_PROTO_TCP or SPP_PROTO_UDP */
    uint8_t _pad;
    uint16_t listener;  /* index of the listener in the config's `listen` list */
    uint32_t _reserved;
    spp_addr local;
    spp_addr remote;
    /* ---- appended in ABI 1: read these only when the host has set_note
     * (`host->size >= offsetof(spp_host, set_note) + sizeof(void *)`);
     * an older host's spp_conn_info ends before them. ---- */
    /* In spp_process: the request's note, the bytes the proxy's input hook
     * attached with host->set_note (at most SPP_NOTE_MAX), valid during
     * the call; NULL and 0 when the request has none. In every proxy hook:
     * NULL and 0. */
    const uint8_t *note;
    uint32_t note_len;
    uint32_t _reserved2;
} spp_conn_info;

/* The most bytes of a request note (spp_host.set_note). */
#define SPP_NOTE_MAX 64u

/* ---- host services ------------------------------------------------------- */

#define SPP_ROLE_PROXY 1u
#define SPP_ROLE_WORKER 2u

#define SPP_LOG_ERROR 1
#define SPP_LOG_WARN 2
#define SPP_LOG_INFO 3
#define SPP_LOG_DEBUG 4

/* Return codes of host services. */
#define SPP_OK 0
#define SPP_ERR_UNKNOWN_FLOW -1   /* the flow is closed or never existed */
#define SPP_ERR_FULL -2           /* no room: the reply was not queued */
#define SPP_ERR_TOO_LARGE -3      /* larger than the ring can ever hold */
#define SPP_ERR_UNSUPPORTED -4    /* not available in this role or thread */
#define SPP_ERR_BAD_NAME -5       /* metric name: 1..48 bytes of [A-Za-z0-9_.:-] */
#define SPP_ERR_BAD_ARG -6        /* a bad argument: reply with data NULL and len > 0 */
#define SPP_ERR_UNKNOWN_TOKEN -7  /* complete: the token is not in flight (completed
                                     already, expired, or never deferred) */

/* What to do on SPP_ERR_FULL from reply: nothing was queued, and room is
 * only made by the loop that called your hook, so never spin on it inside
 * a hook. Either drop the answer (and perhaps close the flow), or keep it
 * and retry later from a deferred path (a thread of your own; in a worker,
 * deferred replies are bounded too and may also answer SPP_ERR_FULL).
 * SPP_ERR_TOO_LARGE never goes away: the reply is longer than
 * spp_host.max_reply. */

/* A hook built with the Rust layer returns this when it panicked; the host
 * counts it and closes the request's connection. */
#define SPP_HOOK_PANICKED (-32768)

/* Why `spp_exception` was called. */
#define SPP_EXC_QUEUE_FULL 1      /* the worker's request ring was full */
#define SPP_EXC_NO_WORKER 2       /* the group has no live worker */
#define SPP_EXC_WORKER_DIED 3     /* the worker died holding the request */
#define SPP_EXC_TIMEOUT 4         /* the request waited in the queue longer than
                                     its group's msg_timeout; it was not processed */
#define SPP_EXC_POISON 5          /* refused unprocessed: workers died twice
                                     while processing these very bytes */

/* ---- L5 routing (worker side) ------------------------------------------- */

/* L5's error codes, returned by get_route / get_route_hash. */
#define SPP_L5_NO_SERVER (-10000)   /* no usable server for the sid */
#define SPP_L5_SYSTEM (-9998)       /* no route table here (proxy, or L5 off) */
#define SPP_L5_BAD_PARAM (-9991)    /* NULL out pointer */
#define SPP_L5_UNKNOWN_SID (-8999)  /* the sid is not known */

/* A route to one instance of a sid. Pass it back to `report` unchanged. */
typedef struct spp_l5_route {
    uint32_t modid;
    uint32_t cmdid;
    spp_addr addr;         /* the instance to call */
    uint32_t slot;         /* host bookkeeping */
    uint32_t slot_epoch;   /* host bookkeeping */
} spp_l5_route;

/* ---- downstream calls (micro-threads) ----------------------------------- */

/* spp_call.transport */
#define SPP_CALL_TCP 0u   /* pooled keep-alive connection per destination */
#define SPP_CALL_UDP 1u   /* one fresh socket per call */

/* spp_call.flags */
#define SPP_CALL_L5 1u        /* route by the L5 sid (modid, cmdid), not addr */
#define SPP_CALL_L5_HASH 2u   /* with SPP_CALL_L5: pick by consistent hash of hash_key */
#define SPP_CALL_RETRY 4u     /* with SPP_CALL_L5: when the first instance fails
                                 (connect refused or slow, closed, timed out) try
                                 once more on another; each attempt gets half of
                                 timeout_ms */

/* spp_call.result (SPP_OK on success). */
#define SPP_CALL_TIMEOUT (-20)    /* no complete answer within timeout_ms */
#define SPP_CALL_REFUSED (-21)    /* the connection was refused (or ICMP unreachable) */
#define SPP_CALL_CLOSED (-22)     /* the peer closed or reset before a complete answer */
#define SPP_CALL_TOO_LARGE (-23)  /* the answer does not fit answer_cap */
#define SPP_CALL_NO_ROUTE (-24)   /* L5 has no usable instance for the sid (or L5 is off) */
#define SPP_CALL_MALFORMED (-25)  /* check returned < 0, or more than it was given */
#define SPP_CALL_BAD_ARGS (-26)   /* a NULL pointer, size too small, unknown transport,
                                     TCP without check, too many calls */
#define SPP_CALL_IO (-27)         /* another socket error (see the worker's log) */
#define SPP_CALL_CANCELLED (-28)  /* call_many returned before this call finished */

/* The most calls one call_many takes. */
#define SPP_CALL_MANY_MAX 64u
/* timeout_ms of 0 means this. */
#define SPP_CALL_DEFAULT_TIMEOUT_MS 1000u

/* Completeness check of an answer, the contract of spp_input: > 0 the first
 * N bytes are one complete answer; 0 need more bytes; < 0 malformed. It runs
 * on the calling micro-thread each time bytes arrive. For UDP each datagram
 * is checked alone (0: not the answer, wait for another). */
typedef int (*spp_call_check)(void *user, const uint8_t *buf, size_t len);

/* One call. Zero it, set `size = sizeof(spp_call)` and the inputs; the host
 * fills the outputs. */
typedef struct spp_call {
    uint32_t size;         /* sizeof(spp_call) as the plugin built it */
    uint32_t transport;    /* SPP_CALL_TCP or SPP_CALL_UDP */
    uint32_t flags;        /* SPP_CALL_L5, SPP_CALL_L5_HASH, SPP_CALL_RETRY */
    uint32_t timeout_ms;   /* whole call, retry included; 0: SPP_CALL_DEFAULT_TIMEOUT_MS */
    spp_addr addr;         /* the destination, unless SPP_CALL_L5 */
    uint32_t modid;        /* the sid, with SPP_CALL_L5 */
    uint32_t cmdid;
    uint64_t hash_key;     /* with SPP_CALL_L5_HASH */
    const uint8_t *req;    /* the bytes to send (may be empty) */
    size_t req_len;
    spp_call_check check;  /* required for TCP; UDP: NULL = a datagram is the answer */
    void *check_user;      /* passed to check */
    uint8_t *answer;       /* the plugin's buffer for the answer */
    size_t answer_cap;
    /* ---- outputs ---- */
    size_t answer_len;     /* bytes of the answer in `answer` */
    int32_t result;        /* SPP_OK or an SPP_CALL_* code */
    uint32_t latency_us;   /* from start to answer or failure */
    spp_l5_route route;    /* the instance that answered last (SPP_CALL_L5);
                              the host reported the outcome to L5 itself */
} spp_call;

/* The services table. Which fields a plugin may use:
 *   - size, abi_version, role, group, worker_index, ctx, reply, close, log:
 *     the first release of ABI 1 had them; use them unconditionally.
 *   - every field after `log` was appended later in ABI 1: use one only
 *     when `size >= offsetof(spp_host, FIELD) + sizeof(FIELD)`; an older
 *     host's table is shorter and the bytes past `size` are not there.
 * Later versions only append, never reorder. */
typedef struct spp_host {
    /* sizeof(spp_host) as the host built it; later versions only append. */
    uint32_t size;
    uint32_t abi_version;   /* SPP_PLUGIN_ABI_VERSION of the host */
    uint32_t role;          /* SPP_ROLE_PROXY or SPP_ROLE_WORKER */
    uint32_t group;         /* worker: group id; proxy: 0 */
    uint32_t worker_index;  /* worker: index inside the group; proxy: 0 */
    uint32_t _reserved;
    void *ctx;              /* opaque, pass back to every service */

    /* Send `len` bytes to `flow`. May be called several times for one TCP
     * flow, after `spp_process` returned, and from any worker thread.
     * `len == 0` closes the connection once pending bytes are flushed;
     * `data` may then be NULL. `data == NULL` with `len > 0` returns
     * SPP_ERR_BAD_ARG. Longer than `max_reply`: SPP_ERR_TOO_LARGE.
     *
     * Three ways to close a TCP connection, all after the bytes already
     * queued for it are flushed, none dropping a queued reply:
     *   - reply(flow, NULL, 0): a close record in order after your replies;
     *     any thread, any time (a deferred answer that ends the connection);
     *   - close(flow): the same close, said plainly;
     *   - spp_process returning non-zero: the same, after the replies that
     *     spp_process made during the call, but only from that call.
     * For UDP a close is a no-op (there is no connection). In every case
     * the proxy then calls spp_close; requests of the flow that were
     * already queued to workers may still be processed, and their replies
     * are dropped. */
    int (*reply)(void *ctx, uint64_t flow, const uint8_t *data, size_t len);
    /* Close `flow` after its pending bytes are flushed (see reply). */
    int (*close)(void *ctx, uint64_t flow);
    /* Write one line to the host's log. `text` need not be NUL-terminated:
     * the line is its first `len` bytes, cut at the first NUL if any
     * (trailing CR/LF trimmed, invalid UTF-8 replaced). NULL logs nothing. */
    void (*log)(void *ctx, int level, const char *text, size_t len);

    /* ---- appended in ABI 1 (check `size` before use: a host whose
     * size <= offsetof(spp_host, count) lacks them) ---- */

    /* Add `delta` to the plugin counter `name` (1..48 bytes of
     * [A-Za-z0-9_.:-], not NUL-terminated). Shown by `spp stat` and on the
     * Prometheus endpoint. Any thread; no lock, no allocation. Returns
     * SPP_OK, SPP_ERR_BAD_NAME, or SPP_ERR_FULL when the process already
     * has 32 counter names. */
    int (*count)(void *ctx, const char *name, size_t name_len, uint64_t delta);
    /* Record one latency sample of `nanos` in the plugin histogram `name`
     * (same rules; at most 8 histogram names per process). */
    int (*record_latency)(void *ctx, const char *name, size_t name_len, uint64_t nanos);

    /* L5 (worker role; elsewhere SPP_L5_SYSTEM). Pick an instance of sid
     * (modid, cmdid) by weighted random choice, skipping failing ones: 0 and
     * `*out` filled, or an SPP_L5_* code. No lock, no syscall. */
    int (*get_route)(void *ctx, uint32_t modid, uint32_t cmdid, spp_l5_route *out);
    /* The same, by consistent hash of `key` (same key, same instance while
     * the instance set is stable). */
    int (*get_route_hash)(void *ctx, uint32_t modid, uint32_t cmdid, uint64_t key,
                          spp_l5_route *out);
    /* Report the outcome of a call made on `route`: `result` >= 0 success,
     * < 0 failure; `latency_us` in microseconds. Feeds the fault tolerance. */
    int (*report)(void *ctx, const spp_l5_route *route, int result, uint64_t latency_us);

    /* ---- appended in ABI 1 (check `size`: a host whose
     * size <= offsetof(spp_host, sleep) lacks it) ---- */

    /* Micro-threads (a worker group with mode = "microthread"): suspend the
     * calling request's micro-thread for `ms` milliseconds while the worker
     * serves other requests, then return SPP_OK. Anywhere else (plain mode,
     * a plugin's own thread, the proxy, spp_init/spp_fini) it returns
     * SPP_ERR_UNSUPPORTED at once instead of blocking. */
    int (*sleep)(void *ctx, uint64_t ms);

    /* ---- appended in ABI 1 (check `size`: a host whose
     * size <= offsetof(spp_host, call) lacks call and call_many) ---- */

    /* Micro-threads: send call->req to the destination and wait for one
     * complete answer, suspending only the calling micro-thread. Returns
     * call->result (SPP_OK or SPP_CALL_*); SPP_ERR_UNSUPPORTED (also in
     * call->result) outside a micro-thread, at once. */
    int (*call)(void *ctx, spp_call *call);
    /* Micro-threads: run `n` calls in parallel (n <= SPP_CALL_MANY_MAX) and
     * wait until all have finished, or until `wait_for` of them succeeded
     * (0: all); calls still running then end with SPP_CALL_CANCELLED. Each
     * call gets its own result. Returns how many succeeded, or a negative
     * code (SPP_ERR_UNSUPPORTED, SPP_CALL_BAD_ARGS) when none was started. */
    int (*call_many)(void *ctx, spp_call *calls, size_t n, size_t wait_for);

    /* ---- appended in ABI 1 (check `size`: a host whose
     * size < offsetof(spp_host, max_reply) + 8 lacks it) ---- */

    /* The largest `len` one reply can ever carry in this process (worker:
     * the response ring's largest record, about half the ring; proxy: 64
     * MiB of replies queued in one hook); 0 = not known. A longer reply
     * fails with SPP_ERR_TOO_LARGE every time: split it, or answer an
     * error. Constant for the process's life. */
    uint64_t max_reply;

    /* ---- appended in ABI 1 (check `size`: a host whose
     * size < offsetof(spp_host, set_note) + sizeof(void *) lacks it, and
     * its spp_conn_info has no note fields) ---- */

    /* Request note. Proxy, only during spp_input/spp_input_ctx: attach
     * `len` bytes (at most SPP_NOTE_MAX, copied) to the request this input
     * call frames, the one its positive return cuts, so the worker need not
     * parse the same headers again: spp_process finds them in conn->note /
     * conn->note_len. A later call in the same input call replaces the
     * note; len 0 removes it. A call whose return is 0 or < 0 frames
     * nothing and its note is dropped; a request framed without a call
     * carries none. The note travels with the request only: spp_route and
     * spp_exception do not see it. Returns SPP_OK, SPP_ERR_TOO_LARGE (len >
     * SPP_NOTE_MAX), SPP_ERR_BAD_ARG (note NULL with len > 0), or
     * SPP_ERR_UNSUPPORTED anywhere else (a worker, other hooks, other
     * threads); a refused call leaves the note as it was (none, unless an
     * earlier call of this input call set one). */
    int (*set_note)(void *ctx, const uint8_t *note, size_t len);

    /* ---- appended in ABI 1 (check `size`: a host whose
     * size < offsetof(spp_host, task_timeout_ms) + 8 lacks defer, complete
     * and task_timeout_ms) ---- */

    /* Async requests (a worker group with mode = "async"). Call it during
     * spp_process, on the worker's thread: the request then stays in
     * flight after spp_process returns (whose return value is ignored)
     * until host->complete(token). Until then its flow's replies
     * (host->reply, any thread) are its answers, in order: the worker
     * starts the flow's next request only after this one completed. It
     * counts against the group's max_in_flight while in flight. Returns
     * SPP_OK with *token set, SPP_ERR_BAD_ARG (token NULL), or
     * SPP_ERR_UNSUPPORTED anywhere else (plain and microthread groups, the
     * proxy, another thread, outside spp_process): then answer before
     * spp_process returns, as a plain plugin does. A second call during
     * the same spp_process returns the same token. */
    int (*defer)(void *ctx, uint64_t *token);
    /* Complete the deferred request `token`, once. `rc` is what
     * spp_process would have returned: non-zero closes the connection
     * after its replies. On the worker's thread (inside spp_poll or a
     * hook) it takes effect at once; from another thread it travels
     * behind the replies that thread made before (reply first, then
     * complete), like a deferred reply. Returns SPP_OK,
     * SPP_ERR_UNKNOWN_TOKEN (not in flight: completed already, expired,
     * or never deferred; on another thread this is found later and only
     * counted), or SPP_ERR_FULL (the deferred channel is full: retry; the
     * request stays in flight until completed or expired). */
    int (*complete)(void *ctx, uint64_t token, int rc);
    /* mode = "async": the group's task_timeout in milliseconds, the time
     * a deferred request may take; answer (an error, if need be) within
     * it. A request still in flight SPP_TASK_GRACE_MS after it has its
     * connection closed by the host and is counted (tasks_expired); its
     * token is then unknown. 0 in every other role and mode. */
    uint64_t task_timeout_ms;
} spp_host;

/* How long past task_timeout_ms the host waits before it expires a
 * deferred request itself. */
#define SPP_TASK_GRACE_MS 1000u

/* ---- hooks the plugin exports ------------------------------------------- */

/* Required. Return SPP_PLUGIN_ABI_VERSION. */
uint32_t spp_plugin_abi_version(void);

/* Optional, both roles. `conf` is, in a worker, its group's `plugin_conf`
 * string, in the proxy `proxy.plugin_conf` (may be empty, never NULL).
 * Non-zero = this process exits with that code, clamped to 1..=255 (see
 * "spp_init's refusal" above; also called by `spp check`). */
int spp_init(const spp_host *host, const char *conf);

/* Optional, a variable: a plugin that keeps state in a worker's memory
 * across requests (a cache that must be coherent, a counter, a session)
 * exports it non-zero, e.g. `const uint32_t spp_plugin_stateful = 1;`.
 * The host only reads it: `spp check` and `spp start` warn about a group of
 * this plugin whose min_workers != max_workers (scaling loses or splits the
 * state; see "Processes" above). */
extern const uint32_t spp_plugin_stateful;

/* Required, proxy. Look at the bytes received so far on a connection:
 * > 0 the first N bytes are one complete request; 0 need more bytes;
 * < 0 the stream is malformed: close the connection.
 * N > len (more than it was given) is a plugin bug, never "need more":
 * the host closes the TCP connection (spp_close gets the unframed bytes as
 * leftover) or drops the UDP datagram, counts it in the proxy's
 * `input_overrun` counter (spp stat, Prometheus) and logs it (throttled).
 * Called repeatedly while requests are pipelined in the buffer. For UDP the
 * buffer is one datagram: a result <= 0 drops it. */
int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len);

/* Optional, proxy. Return the id of the worker group that serves this
 * request (default: 1). An id that no group has fails the request like a
 * full queue (`spp_exception` with SPP_EXC_NO_WORKER). Without this hook
 * every request goes to SPP_DEFAULT_GROUP. */
int spp_route(const spp_conn_info *conn, const uint8_t *req, size_t len);

/* Required, worker. Handle one request; answer with host->reply now or
 * later. Non-zero = close the connection after pending bytes are flushed
 * (the replies made during this call included; see spp_host.reply). */
int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len);

/* Answer order (TCP). The answers on one connection leave in the order its
 * requests arrived, whatever group or worker serves each (HTTP/1.1 and
 * RESP pipelining need it): the proxy holds a request's answers until
 * every earlier request of the connection is complete and its answers are
 * out. A request is complete when its worker finished it: spp_process
 * returned (in a "microthread" group: its micro-thread ended, so sleeps and
 * calls keep it incomplete; in an "async" group, a request spp_process
 * deferred: host->complete), or it failed (expired, worker died; the
 * spp_exception answer takes its place). Everything replied until then,
 * several replies or none, leaves in its turn, and so does a close (a
 * zero-length reply, host->close, a non-zero return). A reply made after
 * its request completed (a deferred reply from another thread) is not
 * waited for: it leaves behind the answers pending when it arrives, so a
 * pipelined protocol answers before spp_process returns, or runs in a
 * micro-thread group. Proxy hooks' answers (spp_exception for a refused
 * request, a reply from spp_input or spp_route) leave behind the answers
 * to the requests before it. Held answers count against
 * proxy.max_send_buffer with the unsent bytes: past it the connection is
 * closed (counter held_overflow). UDP datagrams are unordered. */

/* Optional, proxy. A request could not be handed to a worker (`reason` is
 * one of SPP_EXC_*). The plugin may answer with host->reply. Return < 0 to
 * close the connection, 0 to keep it. `req` is NULL when the bytes are gone
 * (SPP_EXC_WORKER_DIED). Without this hook the connection is closed. */
int spp_exception(const spp_conn_info *conn, const uint8_t *req, size_t len, int reason);

/* Optional, proxy. The connection closed; `leftover` holds bytes that never
 * made a complete request. */
void spp_close(const spp_conn_info *conn, const uint8_t *leftover, size_t len);

/* ---- per-connection proxy state (optional, proxy, TCP only) ------------
 * A plugin that exports spp_input_ctx frames TCP connections with it
 * instead of spp_input (which stays required: UDP datagrams, and hosts
 * without these hooks, use it). The host keeps one context pointer per
 * TCP connection:
 *   - spp_conn_open(conn) makes it, at the connection's first framing
 *     (before the first spp_input_ctx); NULL is a valid context. Optional:
 *     without it the context is NULL.
 *   - spp_input_ctx gets it with every call, with spp_input's contract. The
 *     buffer always starts at the first byte of the request being framed,
 *     and holds what the last call saw plus what arrived since, so a parser
 *     can keep "bytes looked at so far" in the context and resume there
 *     instead of rescanning (after a result N > 0 the next call's buffer
 *     starts N bytes later: the bytes past N were seen already).
 *   - spp_conn_free(conn, ctx) gets it back once, right after spp_close
 *     (every close: the client's, the plugin's, a timeout, shutdown).
 * All three run on the proxy's event-loop thread, like every proxy hook.
 * Do not close the connection from spp_conn_open. The Rust layer's
 * `Plugin::ConnState` is the same idea kept in the layer itself (a state
 * per connection, dropped at close). */
void *spp_conn_open(const spp_conn_info *conn);
int spp_input_ctx(const spp_conn_info *conn, void *conn_ctx, const uint8_t *buf, size_t len);
void spp_conn_free(const spp_conn_info *conn, void *conn_ctx);

/* Optional, worker, mode = "async": drive the plugin's own event loop
 * (an async runtime whose tasks complete deferred requests) on the
 * worker's thread. The worker calls it once per loop turn with
 * wait_ms = 0: run what is ready, never block. When the worker has
 * nothing to do it calls it with wait_ms > 0 instead of sleeping: run what
 * is ready; if nothing was, wait at most wait_ms for the plugin's own I/O
 * or timers, or until `wake_fd` is readable (the worker's doorbell, an
 * eventfd: poll it, never read it), then return. Return soon after a task
 * completed a request, so that its answers are published. Add to
 * *busy_ns (0 on entry) the nanoseconds spent running plugin code, not
 * waiting: the worker counts them as busy time (its spp_process calls are
 * counted by the worker itself). Return SPP_OK, or SPP_ERR_UNSUPPORTED:
 * nothing to drive on this thread (the plugin completes from threads of
 * its own); the worker then sleeps on its own and calls it no more. */
int spp_poll(int wake_fd, uint32_t wait_ms, uint64_t *busy_ns);

/* Optional, both roles. Called once before the process exits normally. */
void spp_fini(void);

/* Optional, worker. The TCP connection `flow` closed, and this worker
 * served requests of it: free what you keep for the flow. Called on the
 * worker's main thread (outside any micro-thread), after this worker took
 * every request of the flow the proxy sent it (in micro-thread mode one of
 * them may still be suspended; its later replies are dropped). Delivered
 * at the proxy's next loop turn, batched; not called for UDP flows, for
 * flows of a worker's predecessor, or when the proxy's bounded queue of
 * such notices overflowed (counted in `flow_closed_dropped`), nor when
 * the proxy itself restarts: treat it as a prompt to free early, and keep
 * a time-based bound for what it does not free. The proxy knows the first
 * few (4) workers a connection's requests went to; a connection whose
 * requests were spread wider notifies only those. Do not reply from it. */
void spp_flow_closed(uint64_t flow);

#ifdef __cplusplus
}
#endif

#endif /* SPP_PLUGIN_H */
