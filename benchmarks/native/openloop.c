/*
 * Open-loop (constant-rate, wrk2-style) HTTP/1.1 load with coordinated-omission correction,
 * the native twin of benchmarks/openloop.py (same semantics; see its docstring).
 *
 *   openloop HOST PORT RATE DURATION CONNECTIONS TIMEOUT REQUEST_FILE
 *
 * REQUEST_FILE holds the exact bytes of the request to send ("-": read them from stdin).
 * Request i is due at start + i / RATE for i / RATE < DURATION; its latency runs from that
 * scheduled time to the end of its response. CONNECTIONS keep-alive connections, opened
 * before the clock starts, each carry one request at a time; due requests wait in a FIFO
 * for a free one. 2xx/3xx answers complete with a latency, anything else is an error; a
 * request not answered TIMEOUT seconds after its scheduled time is an error (its connection
 * is closed, and reopened for the next request). A request written on a kept-alive
 * connection that turns out closed before any byte of an answer came is sent once more,
 * on a fresh connection.
 *
 * Output (stdout): "sent completed errors", then one latency per completed request, in
 * microseconds, one a line. Exit status 0 after a run (connection failures are errors of
 * the run, not of the program), 2 for bad arguments, 1 for a system failure.
 *
 * Single-threaded: epoll, non-blocking sockets, TCP_NODELAY, and a timerfd with absolute
 * CLOCK_MONOTONIC expiries (nanoseconds, timer slack lowered to 1 ns) keeping the schedule.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#define BUF_CAP 65536 /* bound on a response head, a chunk-size line, a trailer line */
#define TIMER_TAG UINT64_MAX

enum cstate { C_CLOSED, C_CONNECTING, C_OPEN };
enum pstate { P_HEAD, P_LENGTH, P_CHUNK_SIZE, P_CHUNK_DATA, P_CHUNK_CRLF, P_TRAILER, P_CLOSE, P_DONE };

struct conn {
    int fd;
    uint32_t gen; /* bumped on every (re)open: events of a closed socket are ignored */
    enum cstate state;
    uint32_t mask;
    /* the request carried, if any */
    int active;
    int64_t due;   /* its scheduled time */
    int attempt;   /* 0, then 1 on the retry */
    int fresh;     /* the socket was opened for this request */
    int got_bytes; /* something of an answer came on this attempt */
    int writing;
    size_t woff;
    /* the response parser */
    enum pstate ps;
    int status;
    int reusable;
    uint64_t remaining;
    size_t scan; /* where to resume looking for the end of the head */
    char *buf;
    size_t pos, len;
};

static int ep = -1, tfd = -1;
static struct conn *conns;
static int nconns;
static char *request;
static size_t request_len;
static struct sockaddr_storage addr;
static socklen_t addr_len;
static int have_addr;
static double rate;
static int64_t timeout_ns, start_ns, armed_ns;
static int64_t total, next_sched, qhead, sent, completed;
static int64_t *latencies;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t due_ns(int64_t i) { return start_ns + (int64_t)((double)i * 1e9 / rate); }

static void die(const char *what) {
    perror(what);
    exit(1);
}

static void set_mask(struct conn *c, uint32_t mask) {
    if (c->fd < 0 || c->mask == mask) return;
    struct epoll_event ev = {.events = mask, .data.u64 = (uint64_t)(c - conns) | (uint64_t)c->gen << 32};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0) die("epoll_ctl");
    c->mask = mask;
}

static void conn_close(struct conn *c) {
    if (c->fd >= 0) close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->state = C_CLOSED;
    c->mask = 0;
    c->writing = 0;
    c->pos = c->len = 0;
}

/* Starts a non-blocking connect: 0 when under way or done, -1 when it failed. */
static int conn_connect(struct conn *c) {
    if (!have_addr) return -1;
    int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(fd, (struct sockaddr *)&addr, addr_len);
    if (r < 0 && errno != EINPROGRESS) {
        close(fd);
        return -1;
    }
    c->gen++;
    c->fd = fd;
    c->state = r == 0 ? C_OPEN : C_CONNECTING;
    c->mask = r == 0 ? EPOLLIN : EPOLLOUT;
    c->pos = c->len = 0;
    struct epoll_event ev = {.events = c->mask, .data.u64 = (uint64_t)(c - conns) | (uint64_t)c->gen << 32};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0) die("epoll_ctl");
    return 0;
}

/* The request failed for good: an error (counted at the end as scheduled - completed). */
static void request_error(struct conn *c) {
    c->active = 0;
    conn_close(c);
}

static void start_send(struct conn *c);

/* Sends the active request on this connection, (re)opening it first when closed. */
static void begin_attempt(struct conn *c) {
    if (c->state == C_CLOSED && conn_connect(c) < 0) {
        request_error(c);
        return;
    }
    if (c->state == C_OPEN) start_send(c);
}

/* The connection failed under the request; `transport`: closed or reset (not a bad answer). */
static void attempt_failed(struct conn *c, int transport) {
    if (transport && c->attempt == 0 && !c->fresh && !c->got_bytes) {
        conn_close(c); /* a kept-alive connection closed as the request went: once more */
        c->attempt = 1;
        c->fresh = 1;
        begin_attempt(c);
    } else {
        request_error(c);
    }
}

static void do_write(struct conn *c) {
    while (c->woff < request_len) {
        ssize_t n = send(c->fd, request + c->woff, request_len - c->woff, MSG_NOSIGNAL);
        if (n > 0) {
            c->woff += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_mask(c, EPOLLIN | EPOLLOUT);
            return;
        } else {
            attempt_failed(c, 1);
            return;
        }
    }
    c->writing = 0;
    set_mask(c, EPOLLIN);
}

static void start_send(struct conn *c) {
    c->ps = P_HEAD;
    c->scan = 0;
    c->pos = c->len = 0;
    c->got_bytes = 0;
    c->woff = 0;
    c->writing = 1;
    if (c->attempt == 0) sent++;
    do_write(c);
}

static int lower(int ch) { return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch; }

static int name_is(const char *p, size_t n, const char *name) {
    return strlen(name) == n && strncasecmp(p, name, n) == 0;
}

static int contains_token(const char *p, size_t n, const char *word) {
    /* comma-separated list, case-insensitive, whitespace around items ignored */
    size_t w = strlen(word), i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && p[j] != ',') j++;
        size_t a = i, b = j;
        while (a < b && (p[a] == ' ' || p[a] == '\t')) a++;
        while (b > a && (p[b - 1] == ' ' || p[b - 1] == '\t')) b--;
        if (b - a == w && strncasecmp(p + a, word, w) == 0) return 1;
        i = j + 1;
    }
    return 0;
}

/* Parses a response head (status line and headers, ending with CRLF CRLF); -1 if bad. */
static int parse_head(struct conn *c, const char *p, size_t n) {
    if (n < 16 || memcmp(p, "HTTP/1.", 7) != 0 || p[7] < '0' || p[7] > '9' || p[8] != ' ')
        return -1;
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (p[i] < '0' || p[i] > '9') return -1;
        status = status * 10 + (p[i] - '0');
    }
    if (p[12] != ' ' && p[12] != '\r') return -1;
    int minor = p[7] - '0', close_ = 0, keep_alive = 0, chunked = 0, have_length = 0;
    uint64_t length = 0;
    const char *line = memchr(p, '\n', n) + 1, *end = p + n;
    while (line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t len = (size_t)(eol - line);
        if (len > 0 && line[len - 1] == '\r') len--;
        if (len == 0) break;
        const char *colon = memchr(line, ':', len);
        if (colon) {
            size_t name_len = (size_t)(colon - line);
            const char *v = colon + 1, *ve = line + len;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            size_t vlen = (size_t)(ve - v);
            if (name_is(line, name_len, "content-length")) {
                uint64_t value = 0;
                if (vlen == 0 || vlen > 18) return -1;
                for (size_t i = 0; i < vlen; i++) {
                    if (v[i] < '0' || v[i] > '9') return -1;
                    value = value * 10 + (uint64_t)(v[i] - '0');
                }
                if (have_length && value != length) return -1;
                have_length = 1;
                length = value;
            } else if (name_is(line, name_len, "transfer-encoding")) {
                for (size_t i = 0; i + 7 <= vlen; i++)
                    if (strncasecmp(v + i, "chunked", 7) == 0) chunked = 1;
            } else if (name_is(line, name_len, "connection")) {
                close_ |= contains_token(v, vlen, "close");
                keep_alive |= contains_token(v, vlen, "keep-alive");
            }
        }
        line = eol + 1;
    }
    c->status = status;
    c->reusable = !close_ && (minor >= 1 || keep_alive);
    if (status >= 100 && status < 200 && status != 101) {
        c->ps = P_HEAD; /* interim (100 Continue, 103 Early Hints): the answer follows */
    } else if (status < 200 || status == 204 || status == 304) {
        c->ps = P_DONE;
        if (status == 101) c->reusable = 0;
    } else if (chunked) {
        c->ps = P_CHUNK_SIZE;
    } else if (have_length) {
        c->remaining = length;
        c->ps = length ? P_LENGTH : P_DONE;
    } else {
        c->ps = P_CLOSE; /* delimited by the end of the connection */
        c->reusable = 0;
    }
    return 0;
}

/* Consumes what was read: 1 when the response is whole, 0 for more, -1 when it is bad. */
static int parse(struct conn *c) {
    for (;;) {
        char *p = c->buf + c->pos;
        size_t avail = c->len - c->pos;
        switch (c->ps) {
        case P_HEAD: {
            size_t from = c->scan > 3 ? c->scan - 3 : 0;
            char *end = from < avail ? memmem(p + from, avail - from, "\r\n\r\n", 4) : NULL;
            if (!end) {
                c->scan = avail;
                goto more;
            }
            size_t head = (size_t)(end - p) + 4;
            if (parse_head(c, p, head) < 0) return -1;
            c->pos += head;
            c->scan = 0;
            break;
        }
        case P_LENGTH:
        case P_CHUNK_DATA: {
            size_t take = avail < c->remaining ? avail : (size_t)c->remaining;
            c->pos += take;
            c->remaining -= take;
            if (c->remaining) goto more;
            if (c->ps == P_LENGTH) {
                c->ps = P_DONE;
            } else {
                c->ps = P_CHUNK_CRLF;
                c->remaining = 2;
            }
            break;
        }
        case P_CHUNK_CRLF:
            if (!avail) goto more;
            if (*p != (c->remaining == 2 ? '\r' : '\n')) return -1;
            c->pos++;
            if (--c->remaining == 0) c->ps = P_CHUNK_SIZE;
            break;
        case P_CHUNK_SIZE: {
            char *eol = memchr(p, '\n', avail);
            if (!eol) goto more;
            uint64_t size = 0;
            int digits = 0;
            char *q = p;
            for (; q < eol; q++) {
                int ch = lower(*q), d;
                if (ch >= '0' && ch <= '9') d = ch - '0';
                else if (ch >= 'a' && ch <= 'f') d = ch - 'a' + 10;
                else break;
                if (++digits > 15) return -1;
                size = size * 16 + (uint64_t)d;
            }
            if (!digits || (q < eol && *q != ';' && *q != ' ' && *q != '\t' && *q != '\r'))
                return -1; /* a chunk extension (";name=value") is skipped */
            c->pos += (size_t)(eol - p) + 1;
            if (size) {
                c->remaining = size;
                c->ps = P_CHUNK_DATA;
            } else {
                c->ps = P_TRAILER;
            }
            break;
        }
        case P_TRAILER: {
            char *eol = memchr(p, '\n', avail);
            if (!eol) goto more;
            size_t len = (size_t)(eol - p);
            c->pos += len + 1;
            if (len == 0 || (len == 1 && *p == '\r')) c->ps = P_DONE;
            break;
        }
        case P_CLOSE:
            c->pos = c->len;
            goto more;
        case P_DONE:
            return 1;
        }
    }
more:
    if (c->pos) {
        memmove(c->buf, c->buf + c->pos, c->len - c->pos);
        c->len -= c->pos;
        c->pos = 0;
    }
    return c->len == BUF_CAP ? -1 : 0; /* a head or a line too long */
}

static void complete(struct conn *c) {
    if (c->status >= 200 && c->status < 400) latencies[completed++] = now_ns() - c->due;
    c->active = 0;
    /* Bytes beyond the answer (or an answer before the request was all sent): not reusable. */
    if (!c->reusable || c->pos < c->len || c->writing) {
        conn_close(c);
    } else {
        c->pos = c->len = 0;
        set_mask(c, EPOLLIN);
    }
}

static void on_event(struct conn *c, uint32_t events) {
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
        if (err == 0 && !(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
        if (err || (events & (EPOLLERR | EPOLLHUP))) {
            if (c->active) request_error(c); /* could not (re)open: an error, no retry */
            else conn_close(c);
            return;
        }
        c->state = C_OPEN;
        set_mask(c, EPOLLIN);
        if (c->active) start_send(c);
        return;
    }
    if (!c->active) {
        /* Idle: the server closed it (or says something unasked): drop it, reopen on demand. */
        char scratch[256];
        ssize_t n = recv(c->fd, scratch, sizeof scratch, 0);
        if (n >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) conn_close(c);
        return;
    }
    if (c->writing && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        uint32_t gen = c->gen;
        do_write(c);
        if (!c->active || c->gen != gen) return; /* failed (maybe retried on a new socket) */
    }
    if (!(events & (EPOLLIN | EPOLLERR | EPOLLHUP))) return;
    ssize_t n = recv(c->fd, c->buf + c->len, BUF_CAP - c->len, 0);
    if (n > 0) {
        c->got_bytes = 1;
        c->len += (size_t)n;
        int r = parse(c);
        if (r > 0) complete(c);
        else if (r < 0) request_error(c);
    } else if (n == 0) {
        if (c->ps == P_CLOSE) {
            c->reusable = 0;
            complete(c);
        } else {
            attempt_failed(c, 1);
        }
    } else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
        attempt_failed(c, 1);
    }
}

static void arm(int64_t at) {
    if (at == armed_ns) return;
    struct itimerspec its = {0};
    if (at != INT64_MAX) {
        its.it_value.tv_sec = at / 1000000000;
        its.it_value.tv_nsec = at % 1000000000;
    } /* else all zero: disarmed */
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) < 0) die("timerfd_settime");
    armed_ns = at;
}

static void wait_events(void) {
    struct epoll_event events[64];
    int n = epoll_wait(ep, events, 64, -1);
    if (n < 0) {
        if (errno == EINTR) return;
        die("epoll_wait");
    }
    for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == TIMER_TAG) {
            uint64_t expirations;
            if (read(tfd, &expirations, sizeof expirations) > 0) armed_ns = -1; /* fired */
            continue;
        }
        struct conn *c = &conns[(uint32_t)tag];
        if (c->fd < 0 || c->gen != (uint32_t)(tag >> 32)) continue; /* a socket since closed */
        on_event(c, events[i].events);
    }
}

static void dispatch(int64_t now) {
    while (qhead < next_sched) {
        struct conn *free_ = NULL;
        for (int i = 0; i < nconns; i++) {
            struct conn *c = &conns[i];
            if (c->active || c->state == C_CONNECTING) continue;
            if (c->state == C_OPEN) {
                free_ = c; /* prefer an open connection */
                break;
            }
            if (!free_) free_ = c;
        }
        if (!free_) return;
        int64_t due = due_ns(qhead++);
        if (now >= due + timeout_ns) continue; /* waited too long already: an error */
        free_->active = 1;
        free_->due = due;
        free_->attempt = 0;
        free_->fresh = free_->state == C_CLOSED;
        free_->got_bytes = 0;
        begin_attempt(free_);
    }
}

static int usage(const char *message) {
    fprintf(stderr,
            "openloop: %s\nusage: openloop HOST PORT RATE DURATION CONNECTIONS TIMEOUT "
            "REQUEST_FILE\n",
            message);
    return 2;
}

static int positive(const char *text, double *out) {
    char *end;
    errno = 0;
    *out = strtod(text, &end);
    return errno == 0 && end != text && *end == '\0' && *out > 0 && *out < 1e12;
}

static int read_request(const char *path) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) return -1;
    size_t cap = 4096;
    request = malloc(cap);
    for (;;) {
        if (!request) return -1;
        size_t n = fread(request + request_len, 1, cap - request_len, f);
        request_len += n;
        if (n == 0) break;
        if (request_len == cap) request = realloc(request, cap *= 2);
    }
    int bad = ferror(f);
    if (f != stdin) fclose(f);
    return bad ? -1 : 0;
}

int main(int argc, char **argv) {
    if (argc != 8) return usage("expected 7 arguments");
    double duration, timeout;
    char *end;
    long port = strtol(argv[2], &end, 10);
    if (*end || end == argv[2] || port < 1 || port > 65535) return usage("bad PORT");
    if (!positive(argv[3], &rate)) return usage("RATE must be a positive number");
    if (!positive(argv[4], &duration)) return usage("DURATION must be a positive number");
    long connections = strtol(argv[5], &end, 10);
    if (*end || end == argv[5] || connections < 1 || connections > 100000)
        return usage("CONNECTIONS must be a positive integer");
    if (!positive(argv[6], &timeout)) return usage("TIMEOUT must be a positive number");
    if (read_request(argv[7]) < 0) {
        perror(argv[7]);
        return 2;
    }
    if (request_len == 0) return usage("the request is empty");
    double expected = rate * duration - 1e-9; /* due times i / rate < duration */
    if (expected > 1e9) return usage("RATE x DURATION is too large");
    total = expected > 0 ? (int64_t)expected : 0;
    if ((double)total < expected) total++;
    timeout_ns = (int64_t)(timeout * 1e9);
    nconns = (int)connections;

    signal(SIGPIPE, SIG_IGN);
    prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0); /* wake up on time, not up to 50 us late */

    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *found;
    int gai = getaddrinfo(argv[1], argv[2], &hints, &found);
    if (gai == 0) {
        memcpy(&addr, found->ai_addr, found->ai_addrlen);
        addr_len = found->ai_addrlen;
        have_addr = 1;
        freeaddrinfo(found);
    } else {
        fprintf(stderr, "openloop: %s: %s (every request will fail)\n", argv[1], gai_strerror(gai));
    }

    latencies = malloc(sizeof *latencies * (size_t)(total ? total : 1));
    conns = calloc((size_t)nconns, sizeof *conns);
    if (!latencies || !conns) die("malloc");
    ep = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (ep < 0 || tfd < 0) die("epoll/timerfd");
    struct epoll_event tev = {.events = EPOLLIN, .data.u64 = TIMER_TAG};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, tfd, &tev) < 0) die("epoll_ctl");
    armed_ns = -1;

    /* Open the connections before the clock starts (failures: reopened on demand). */
    for (int i = 0; i < nconns; i++) {
        conns[i].fd = -1;
        conns[i].buf = malloc(BUF_CAP);
        if (!conns[i].buf) die("malloc");
        conn_connect(&conns[i]);
    }
    int64_t warm_until = now_ns() + timeout_ns;
    for (;;) {
        int connecting = 0;
        for (int i = 0; i < nconns; i++) connecting |= conns[i].state == C_CONNECTING;
        if (!connecting) break;
        if (now_ns() >= warm_until) {
            for (int i = 0; i < nconns; i++)
                if (conns[i].state == C_CONNECTING) conn_close(&conns[i]);
            break;
        }
        arm(warm_until);
        wait_events();
    }

    start_ns = now_ns();
    for (;;) {
        int64_t now = now_ns();
        while (next_sched < total && due_ns(next_sched) <= now) next_sched++;
        for (int i = 0; i < nconns; i++) /* per-request timeouts, from the scheduled time */
            if (conns[i].active && now >= conns[i].due + timeout_ns) request_error(&conns[i]);
        while (qhead < next_sched && now >= due_ns(qhead) + timeout_ns) qhead++;
        dispatch(now);

        int64_t wake = INT64_MAX;
        int busy = 0;
        if (next_sched < total) wake = due_ns(next_sched);
        if (qhead < next_sched && due_ns(qhead) + timeout_ns < wake) wake = due_ns(qhead) + timeout_ns;
        for (int i = 0; i < nconns; i++) {
            if (!conns[i].active) continue;
            busy = 1;
            if (conns[i].due + timeout_ns < wake) wake = conns[i].due + timeout_ns;
        }
        if (next_sched == total && qhead == total && !busy) break;
        arm(wake);
        wait_events();
    }

    for (int i = 0; i < nconns; i++) conn_close(&conns[i]);
    static char out[1 << 16];
    setvbuf(stdout, out, _IOFBF, sizeof out);
    printf("%" PRId64 " %" PRId64 " %" PRId64 "\n", sent, completed, total - completed);
    for (int64_t i = 0; i < completed; i++)
        printf("%" PRId64 ".%03d\n", latencies[i] / 1000, (int)(latencies[i] % 1000));
    if (fflush(stdout) != 0) die("stdout");
    return 0;
}
