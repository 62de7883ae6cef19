/*
 * bad_ctor.c: a test-only echo plugin whose constructor misbehaves, for the
 * plugin checks (`spp check`, `spp start`: each plugin is loaded first in a
 * throw-away `spp __check-plugin` child whose fate the CLI reports).
 * build.rs compiles one shared object per fate, chosen by one macro:
 *
 *   BAD_CTOR_EXIT0          _exit(0) while loading
 *   BAD_CTOR_EXIT7          _exit(7)
 *   BAD_CTOR_ABORT          abort()
 *   BAD_CTOR_SEGV           a write through a null pointer (SIGSEGV; not
 *                           raise(): Rust's own SIGSEGV handler, there for
 *                           stack overflows, would swallow a raised one)
 *   BAD_CTOR_HANG           sleep forever
 *   BAD_CTOR_CHATTER_EXIT0  print garbage and fake verdicts, then _exit(0)
 *   BAD_CTOR_CHATTER        print the same, then load normally
 *   BAD_CTOR_FORK           fork a child that keeps every inherited fd
 *                           open for a few seconds, then load normally
 *
 * Past the constructor it is the echo protocol (4-byte big-endian length,
 * then the payload; the reply is the same frame).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "spp_plugin.h"

/* Bytes of the length prefix. */
#define HEADER_LEN 4u
/* The largest payload accepted. */
#define MAX_PAYLOAD ((size_t)1 << 20)

/* How long the forked child of BAD_CTOR_FORK keeps the fds open. */
#define FORK_CHILD_SECONDS 3u

static const spp_host *g_host;

#if defined(BAD_CTOR_CHATTER) || defined(BAD_CTOR_CHATTER_EXIT0)
/* What a chatty plugin prints: garbage, a bare JSON verdict, and one with
 * the check's own prefix, each claiming the plugin passed. */
static void chatter(void) {
    printf("garbage \x01\x02 not a verdict\n");
    printf("{\"plugin\":\"x\",\"role\":\"worker\",\"ok\":true}\n");
    printf("spp-plugin-verdict: {\"plugin\":\"x\",\"role\":\"worker\",\"ok\":true}\n");
    printf("no newline at the end");
    fflush(stdout);
}
#endif

__attribute__((constructor)) static void bad_ctor(void) {
#if defined(BAD_CTOR_EXIT0)
    _exit(0);
#elif defined(BAD_CTOR_EXIT7)
    _exit(7);
#elif defined(BAD_CTOR_ABORT)
    abort();
#elif defined(BAD_CTOR_SEGV)
    volatile int *volatile nowhere = NULL;
    *nowhere = 1;
#elif defined(BAD_CTOR_HANG)
    for (;;) {
        pause();
    }
#elif defined(BAD_CTOR_CHATTER_EXIT0)
    chatter();
    _exit(0);
#elif defined(BAD_CTOR_CHATTER)
    chatter();
#elif defined(BAD_CTOR_FORK)
    if (fork() == 0) {
        sleep(FORK_CHILD_SECONDS);
        _exit(0);
    }
#else
#error "define one BAD_CTOR_* fate"
#endif
}

uint32_t spp_plugin_abi_version(void) {
    return SPP_PLUGIN_ABI_VERSION;
}

int spp_init(const spp_host *host, const char *conf) {
    (void)conf;
    g_host = host;
    return host == NULL ? 1 : 0;
}

int spp_input(const spp_conn_info *conn, const uint8_t *buf, size_t len) {
    (void)conn;
    if (len < HEADER_LEN) {
        return 0;
    }
    size_t payload = ((size_t)buf[0] << 24) | ((size_t)buf[1] << 16) | ((size_t)buf[2] << 8) | (size_t)buf[3];
    if (payload > MAX_PAYLOAD) {
        return -1;
    }
    return len < HEADER_LEN + payload ? 0 : (int)(HEADER_LEN + payload);
}

int spp_process(const spp_conn_info *conn, const uint8_t *req, size_t len) {
    if (g_host == NULL) {
        return -1;
    }
    return g_host->reply(g_host->ctx, conn->flow, req, len) == SPP_OK ? 0 : -1;
}
