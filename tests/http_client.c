/* The small HTTP client and the server child of the serve tests (http_client.h). */
#include "http_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec * 1e-9;
}

typedef struct buf {
    char *p;
    size_t n, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

/* The body's state machine: Content-Length, chunked, or until EOF. */
typedef struct reader {
    bool chunked;
    int64_t remaining;   /* Content-Length left, or the current chunk's bytes left; -1: until EOF */
    int chunk_state;     /* chunked: 0 size line, 1 data, 2 CRLF after data, 3 trailers, 4 done */
    buf line;
    buf body;
    yt_http_data_fn fn;
    void *ctx;
    bool left;           /* the callback closed the connection */
} reader;

static void deliver(reader *r, const char *s, size_t n) {
    if (!n) return;
    put(&r->body, s, n);
    if (r->fn && !r->left && !r->fn(r->ctx, s, n)) r->left = true;
}

/* Feeds body bytes; returns true when the body is complete. */
static bool feed(reader *r, const char *s, size_t n) {
    if (!r->chunked) {
        if (r->remaining >= 0 && (int64_t)n > r->remaining) n = (size_t)r->remaining;
        deliver(r, s, n);
        if (r->remaining >= 0) r->remaining -= (int64_t)n;
        return r->remaining == 0;
    }
    size_t i = 0;
    while (i < n && r->chunk_state != 4) {
        if (r->chunk_state == 1) {
            size_t take = n - i < (size_t)r->remaining ? n - i : (size_t)r->remaining;
            deliver(r, s + i, take);
            i += take;
            r->remaining -= (int64_t)take;
            if (r->remaining == 0) r->chunk_state = 2;
            continue;
        }
        char c = s[i++];
        if (c != '\n') {
            if (c != '\r') put(&r->line, &c, 1);
            continue;
        }
        const char *ln = r->line.p ? r->line.p : "";
        if (r->chunk_state == 0) {
            r->remaining = strtoll(ln, NULL, 16);
            r->chunk_state = r->remaining > 0 ? 1 : 3;
        } else if (r->chunk_state == 2) {
            r->chunk_state = 0;
        } else if (r->chunk_state == 3 && !ln[0]) {
            r->chunk_state = 4;
        }
        r->line.n = 0;
        if (r->line.p) r->line.p[0] = 0;
    }
    return r->chunk_state == 4;
}

int yt_http(int port, const char *method, const char *path, const char *headers, const char *body, size_t blen,
            double timeout_s, yt_http_data_fn fn, void *ctx, yt_http_resp *out) {
    memset(out, 0, sizeof *out);
    double t_end = now() + timeout_s;
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    buf req = {0};
    char line[512];
    snprintf(line, sizeof line, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n", method, path, port);
    put(&req, line, strlen(line));
    if (body) {
        snprintf(line, sizeof line, "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
        put(&req, line, strlen(line));
    }
    if (headers) put(&req, headers, strlen(headers));
    put(&req, "\r\n", 2);
    if (body) put(&req, body, blen);
    size_t sent = 0;
    int rc = -1;
    while (sent < req.n) {
        ssize_t w = send(fd, req.p + sent, req.n - sent, MSG_NOSIGNAL);
        if (w <= 0) {
            if (errno == EINTR) continue;
            break; /* the server may answer early (413) and close: read what it said */
        }
        sent += (size_t)w;
    }
    free(req.p);
    buf head = {0};
    reader r = {.remaining = -1, .fn = fn, .ctx = ctx};
    bool in_body = false, complete = false;
    char chunk[16384];
    while (!complete && !r.left) {
        double left = t_end - now();
        if (left <= 0) break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(left * 1000) + 1);
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) break;
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) { /* EOF: a body without length ends here */
            complete = in_body && !r.chunked && r.remaining < 0;
            break;
        }
        if (in_body) {
            complete = feed(&r, chunk, (size_t)n);
            continue;
        }
        put(&head, chunk, (size_t)n);
        char *eoh = strstr(head.p, "\r\n\r\n");
        if (!eoh) continue;
        size_t hl = (size_t)(eoh - head.p) + 4;
        out->headers = strndup(head.p, hl);
        sscanf(head.p, "HTTP/1.%*d %d", &out->status);
        char *te = yt_http_header(out, "Transfer-Encoding"), *cl = yt_http_header(out, "Content-Length");
        r.chunked = te && strcasestr(te, "chunked");
        if (!r.chunked && cl) r.remaining = strtoll(cl, NULL, 10);
        bool no_body = !strcmp(method, "HEAD") || out->status == 204 || out->status == 304;
        free(te), free(cl);
        in_body = true;
        complete = no_body || (!r.chunked && r.remaining == 0) ||
                   (head.n > hl && feed(&r, head.p + hl, head.n - hl));
    }
    if (complete) rc = 0;
    close(fd);
    free(head.p);
    free(r.line.p);
    out->body = r.body.p ? r.body.p : strdup("");
    out->len = r.body.n;
    return rc;
}

void yt_http_resp_free(yt_http_resp *r) {
    free(r->headers);
    free(r->body);
    memset(r, 0, sizeof *r);
}

char *yt_http_header(const yt_http_resp *r, const char *name) {
    if (!r->headers) return NULL;
    size_t nl = strlen(name);
    for (const char *p = strstr(r->headers, "\r\n"); p; p = strstr(p + 2, "\r\n")) {
        const char *h = p + 2;
        if (strncasecmp(h, name, nl) == 0 && h[nl] == ':') {
            h += nl + 1;
            while (*h == ' ') h++;
            const char *e = strstr(h, "\r\n");
            return strndup(h, e ? (size_t)(e - h) : strlen(h));
        }
    }
    return NULL;
}

/* ---- the server child ------------------------------------------------------------ */

int yt_serve_start(yt_server *s, const char *cli, const char *args, const char *log_path, double timeout_s) {
    memset(s, 0, sizeof *s);
    snprintf(s->log, sizeof s->log, "%s", log_path);
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "exec %s serve --port 0 %s 2>%s", cli, args, log_path);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a test that dies takes its server with it */
        execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
        _exit(127);
    }
    s->pid = pid;
    double t_end = now() + timeout_s;
    while (now() < t_end) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            return -1; /* it exited: the log says why */
        }
        if (!s->port) {
            FILE *f = fopen(log_path, "r");
            char line[1024];
            while (f && fgets(line, sizeof line, f)) {
                const char *p = strstr(line, "listening on http://");
                const char *c = p ? strrchr(p, ':') : NULL;
                if (c) s->port = atoi(c + 1);
            }
            if (f) fclose(f);
        }
        if (s->port) {
            yt_http_resp r;
            int rc = yt_http(s->port, "GET", "/health", NULL, NULL, 0, 5, NULL, NULL, &r);
            int st2 = r.status;
            s->loading_503 += rc == 0 && st2 == 503 && r.body && strstr(r.body, "\"loading\"");
            yt_http_resp_free(&r);
            if (rc == 0 && st2 == 200) return 0;
        }
        usleep(s->port ? 2000 : 5000); /* the port is printed before the model loads */
    }
    yt_serve_stop(s, SIGKILL, 5);
    return -1;
}

int yt_serve_stop(yt_server *s, int sig, double timeout_s) {
    if (s->pid <= 0) return -1;
    kill(s->pid, sig);
    double t_end = now() + timeout_s;
    int st = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(s->pid, &st, WNOHANG);
        if (w == s->pid) {
            rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
            break;
        }
        if (now() >= t_end) {
            kill(s->pid, SIGKILL);
            waitpid(s->pid, &st, 0);
            break;
        }
        usleep(10000);
    }
    s->pid = 0;
    return rc;
}
