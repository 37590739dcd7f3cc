/* A small blocking HTTP/1.1 client over plain sockets, for the serve tests
 * and bench/serve_bench.c: one request a connection (Connection: close),
 * Content-Length or chunked bodies, an optional callback as body bytes
 * arrive (server-sent events). Loopback use only: no TLS, no redirects.
 * And a helper that runs `yuanft serve` as a child process. */
#ifndef YT_HTTP_CLIENT_H
#define YT_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct yt_http_resp {
    int status;          /* 0 when no response was read */
    char *headers;       /* the header block as received (malloc'd) */
    char *body;          /* de-chunked, NUL-terminated (malloc'd) */
    size_t len;
} yt_http_resp;

/* Called with each piece of the (de-chunked) body as it arrives; returning
 * false closes the connection at once (a client that leaves). */
typedef bool (*yt_http_data_fn)(void *ctx, const char *data, size_t n);

/* Sends method path with body (may be NULL) and extra header lines
 * ("Name: value\r\n"..., or NULL) to 127.0.0.1:port; reads the response.
 * Returns 0, or -1 when the connection failed or timed out (timeout_s for
 * the whole exchange) or the callback left; out is filled as far as read. */
int yt_http(int port, const char *method, const char *path, const char *headers, const char *body, size_t blen,
            double timeout_s, yt_http_data_fn fn, void *ctx, yt_http_resp *out);
void yt_http_resp_free(yt_http_resp *r);
/* The value of a response header (case-insensitive name), malloc'd, or NULL. */
char *yt_http_header(const yt_http_resp *r, const char *name);

/* A `yuanft serve` child: started with `args` after "serve --port 0", its
 * stderr in log; yt_serve_start returns once GET /health answers 200
 * (or -1 after timeout_s, the child killed). */
typedef struct yt_server {
    pid_t pid;
    int port;
    char log[1024];
    int loading_503;    /* GET /health answers 503 {"status": "loading"} seen while it came up */
} yt_server;
int yt_serve_start(yt_server *s, const char *cli, const char *args, const char *log_path, double timeout_s);
/* Sends sig and waits up to timeout_s for the exit: its status (the exit
 * code, or 128 + signal), -1 if it had to be killed. */
int yt_serve_stop(yt_server *s, int sig, double timeout_s);

#endif
