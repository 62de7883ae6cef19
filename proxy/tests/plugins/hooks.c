/*
 * A proxy-side test plugin that exercises every optional proxy hook and the
 * proxy's host services. Protocol: the echo frame (4-byte big-endian
 * length + payload). The first payload byte steers it:
 *
 *   'X'  spp_input rejects the stream (frame error).
 *   'O'  spp_input returns more bytes than it was given (a plugin error).
 *   'N'  spp_route names group 9, which does not exist: spp_exception
 *        answers with the frame "EXC:<reason>" and keeps the connection.
 *   'C'  routed to group 9 too; spp_exception calls host->close(flow).
 *   'R'  routed to group 9 too; spp_exception first replies to the flow
 *        with another proxy epoch (the host refuses that), then answers
 *        like 'N'.
 *   'T'  spp_input (and spp_input_ctx) attaches the request note
 *        "len=<payload length>" with host->set_note (when the host has it).
 *   else group 1 (the workers echo it).
 *
 * A request failed because its worker died (req == NULL) is answered with
 * "DIED" and its connection closed (return -1), or kept (return 0) under
 * conf "keep_died". A stale request
 * (SPP_EXC_TIMEOUT) is answered with "TIMEOUT" when the proxy has no bytes
 * for it (req == NULL), with "BYE" and a close (return -1) when its payload
 * starts with 'Q', and like any other with "EXC:4" otherwise. spp_close and
 * spp_fini log a line through host->log so the test can see them in the
 * proxy's log.
 *
 * Plugin metrics: spp_init counts "proxy_inits" and records one "init"
 * latency sample; the thread below counts "thread_starts" from its own
 * thread.
 *
 * Built with -DHOOKS_NO_EXCEPTION it has no spp_exception at all.
 *
 * Built with -DHOOKS_CTX it frames TCP with spp_input_ctx and a context
 * per connection (spp_conn_open / spp_conn_free): each call looks only at
 * the bytes it has not seen (resuming where the last call stopped), and
 * spp_conn_free logs "ctx free requests=R scanned=S" (S: bytes looked at).
 *
 * conf "refuse": spp_init fails with 7. conf "thread": spp_init starts a
 * thread that spins in this library's code forever (it outlives spp_fini,
 * so unloading the library at exit would crash the proxy).
 */
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spp_plugin.h"

#define HEADER_LEN 4u
#define UNKNOWN_GROUP 9
#define MAX_LINE 128
#define INIT_LATENCY_NS 1500u
/* Flipping this flow-id bit changes the flow's proxy epoch. */
#define OTHER_EPOCH_BIT (1ull << 48)

static const spp_host *host;
/* conf "keep_died": a request whose worker died is answered, and its
 * connection kept. */
static int keep_died;

/* Whether the host has request notes (set_note; appended in ABI 1). */
static int has_notes(void) {
    return host->size >= offsetof(spp_host, set_note) + sizeof host->set_note;
}

/* A complete request of `len` bytes at `buf` steered 'T' gets its note. */
static void note_request(const uint8_t *buf, size_t len) {
    if (len <= HEADER_LEN || buf[HEADER_LEN] != 'T' || !has_notes()) return;
    char note[SPP_NOTE_MAX];
    int n = snprintf(note, sizeof note, "len=%zu", len - HEADER_LEN);
    if (n > 0) host->set_note(host->ctx, (const uint8_t *)note, (size_t)n);
}

/* Whether the host has the metric services (appended in ABI 1). */
static int has_metrics(void) { return host->size > offsetof(spp_host, count); }

static void count(const char *name) {
    if (has_metrics()) host->count(host->ctx, name, strlen(name), 1);
}

static void log_line(const char *text) {
    host->log(host->ctx, SPP_LOG_INFO, text, strlen(text));
}

__attribute__((unused)) static void reply_frame(uint64_t flow, const char *payload) {
    uint8_t frame[MAX_LINE];
    size_t len = strlen(payload);
    frame[0] = 0;
    frame[1] = 0;
    frame[2] = (uint8_t)(len >> 8);
    frame[3] = (uint8_t)len;
    memcpy(frame + HEADER_LEN, payload, len);
    host->reply(host->ctx, flow, frame, HEADER_LEN + len);
}

uint32_t spp_plugin_abi_version(void) { return SPP_PLUGIN_ABI_VERSION; }

static volatile unsigned long spins;

static void *spin_forever(void *arg) {
    (void)arg;
    count("thread_starts");
    for (;;) spins++;
    return NULL;
}

int spp_init(const spp_host *h, const char *conf) {
    char line[MAX_LINE];
    host = h;
    snprintf(line, sizeof line, "hooks plugin init role=%u conf=%s", h->role, conf);
    log_line(line);
    count("proxy_inits");
    keep_died = strcmp(conf, "keep_died") == 0;
    if (has_metrics()) host->record_latency(host->ctx, "init", strlen("init"), INIT_LATENCY_NS);
    if (strcmp(conf, "thread") == 0) {
        pthread_t thread;
        if (pthread_create(&thread, NULL, spin_forever, NULL) != 0) return 8;
        pthread_detach(thread);
    }
    return strcmp(conf, "refuse") == 0 ? 7 : 0;
}

#ifdef HOOKS_CTX
/* One connection's framing state. */
typedef struct hooks_ctx {
    size_t seen;      /* bytes of the current request looked at already */
    size_t scanned;   /* bytes looked at over the connection's life */
    size_t requests;  /* requests framed */
} hooks_ctx;

void *spp_conn_open(const spp_conn_info *conn) {
    (void)conn;
    log_line("ctx open");
    return calloc(1, sizeof(hooks_ctx));
}

int spp_input_ctx(const spp_conn_info *conn, void *vctx, const uint8_t *buf, size_t len) {
    (void)conn;
    hooks_ctx *c = vctx;
    if (c == NULL) return -1;
    /* Only the new bytes are looked at. */
    c->scanned += len - c->seen;
    c->seen = len;
    if (len < HEADER_LEN) return 0;
    size_t payload = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | buf[3];
    if (len < HEADER_LEN + payload) return 0;
    /* The host cuts the request off: the next call starts at its end. */
    c->seen = len - (HEADER_LEN + payload);
    c->requests++;
    note_request(buf, HEADER_LEN + payload);
    return (int)(HEADER_LEN + payload);
}

void spp_conn_free(const spp_conn_info *conn, void *vctx) {
    (void)conn;
    hooks_ctx *c = vctx;
    char line[MAX_LINE];
    snprintf(line, sizeof line, "ctx free requests=%zu scanned=%zu", c->requests, c->scanned);
    log_line(line);
    free(c);
}
#endif

int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < HEADER_LEN) return 0;
    size_t payload = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | buf[3];
    if (len > HEADER_LEN && buf[HEADER_LEN] == 'X') return -1;
    if (len > HEADER_LEN && buf[HEADER_LEN] == 'O') return (int)len + 100;
    if (len < HEADER_LEN + payload) return 0;
    note_request(buf, HEADER_LEN + payload);
    return (int)(HEADER_LEN + payload);
}

int spp_route(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    (void)conn;
    if (len <= HEADER_LEN) return 1;
    uint8_t steer = req[HEADER_LEN];
    if (steer == 'N' || steer == 'C' || steer == 'R') return UNKNOWN_GROUP;
    return 1;
}

int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    (void)conn;
    (void)req;
    (void)len;
    return 0;
}

#ifndef HOOKS_NO_EXCEPTION
int spp_exception(const spp_conn_info *conn, const uint8_t *req, size_t len, int reason) {
    char text[MAX_LINE];
    if (reason == SPP_EXC_TIMEOUT && req == NULL) {
        reply_frame(conn->flow, "TIMEOUT");
        return 0;
    }
    if (reason == SPP_EXC_TIMEOUT && len > HEADER_LEN && req[HEADER_LEN] == 'Q') {
        reply_frame(conn->flow, "BYE");
        return -1;
    }
    if (req == NULL) {
        reply_frame(conn->flow, "DIED");
        return keep_died ? 0 : -1;
    }
    if (len > HEADER_LEN && req[HEADER_LEN] == 'C') {
        host->close(host->ctx, conn->flow);
        return 0;
    }
    if (len > HEADER_LEN && req[HEADER_LEN] == 'R') {
        host->reply(host->ctx, conn->flow ^ OTHER_EPOCH_BIT, (const uint8_t *)"x", 1);
    }
    snprintf(text, sizeof text, "EXC:%d", reason);
    reply_frame(conn->flow, text);
    return 0;
}
#endif

void spp_close(const spp_conn_info *conn, const uint8_t *leftover, size_t len) {
    char line[MAX_LINE];
    (void)leftover;
    snprintf(line, sizeof line, "hooks close proto=%u leftover=%zu", conn->proto, len);
    log_line(line);
}

void spp_fini(void) { log_line("hooks plugin fini"); }
