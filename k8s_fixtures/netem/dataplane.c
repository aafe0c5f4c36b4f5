/* The delay line's data plane in C: the per-packet loop of k8s_fixtures/netem/delayline.py.
 *
 * Why C (issue 14 item 5): the Python loop costs ~22 us of CPU per packet during FL rounds,
 * 10.6% of a paper-CNN round at NET2 on two cores; the kernel's own share of a queued packet
 * is a few microseconds. The transport is libnetfilter_queue (metadata copy, GSO packets whole,
 * batch verdicts, the kernel's receive stamps), the same levers as nfq.py.
 *
 * What stays in Python (k8s_fixtures.netem.cloop): configuration, the heartbeat and status
 * file, reloads, and every random draw. The seeded models of models.py draw each class's
 * delays and loss decisions in advance into two rings per class (dl_feed_*); this loop takes
 * them in order, a delay only for a packet that was not lost, exactly as the Python loop
 * calls the samplers, so both loops give a seed the same per-packet sequence. A ring that
 * runs dry (it should not: Python tops it up every few ms) counts an underrun and the packet
 * gets the configured mean delay and no loss.
 *
 * Rate (k8s_fixtures/netem/shaper.py, the same arithmetic): a packet is through the link when
 * the packets ahead of it are and its frames have been sent at the class's rate; a packet
 * that would find more than the byte limit ahead of it is dropped (tail drop, as tbf). Its
 * frames are counted from its IP and TCP headers, the first HEAD bytes the kernel copies: a
 * GSO packet is charged for every segment it will be cut into.
 *
 * Threads: dl_run() is called from a Python thread (ctypes releases the GIL); the other
 * functions from the main thread. One mutex guards every class; the loop holds it for one
 * pass at a time and never while it sleeps.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>
#include <libnetfilter_queue/libnetfilter_queue.h>
#include <libnetfilter_queue/linux_nfnetlink_queue.h>

#define RING 16384 /* draws per stream; a power of two */
#define READS_PER_PASS 16 /* recvmmsg calls per pass, each up to BATCH datagrams */
#define BATCH 64
#define DGRAM 4096 /* a queued packet's message: metadata and HEAD bytes, ~250-350 bytes */
#define HEAD 128   /* bytes of each packet copied: IP and TCP headers (shaper.HEAD) */
#define ETH_HEADER 14

/* Mirrored by ctypes (cloop.Counters): field order and types must match. */
typedef struct {
    uint64_t seen, passed, held_total, held_now, max_held, dropped_loss, released_now, stamped;
    uint64_t underruns, dropped_rate, unparsed;
    double late_sum_s, late_max_s, early_max_s;
} dl_counters;

typedef struct {
    double due;
    uint32_t id;
} held_t;

struct dl;

typedef struct {
    dl_counters c;
    int queue, max_len, gso, reorder;
    double delay_s;                /* the delay when there is no jitter (and on an underrun) */
    int delay_stream, loss_stream; /* whether draws come from the rings */
    double last_due;
    double rate, busy_until; /* bytes per second (0: no rate), when the link is free */
    uint64_t limit;          /* bytes that may wait for the link */
    int mtu;
    double dring[RING];
    uint64_t dr, dw; /* delay ring: read (loop), write (feed) counts */
    uint8_t lring[RING];
    uint64_t lr, lw;
    held_t *fifo; /* ring buffer of held packets in arrival (= id) order */
    size_t fcap, fhead, flen;
    held_t *heap; /* min-heap on due time, for classes that may reorder */
    size_t hcap, hlen;
    struct nfq_q_handle *qh;
    struct dl *dl;
} dl_class;

typedef struct dl {
    struct nfq_handle *h;
    int fd, efd, lowfd, n; /* netlink socket, stop wake-up, "a ring is half empty" */
    int low_pending;
    dl_class *cls;
    pthread_mutex_t mu;
    volatile int stop;
    double batch_s, max_sleep_s, now, offset; /* this pass: monotonic now, realtime - monotonic */
    int batch_ok;
    uint64_t wakeups, overruns, errors, moved;
    char err[256];
} dl;

static double mono(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static double wall(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

dl *dl_new(int n, double batch_s, double max_sleep_s) {
    dl *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    d->cls = calloc((size_t)n, sizeof *d->cls);
    if (!d->cls) {
        free(d);
        return NULL;
    }
    d->n = n;
    d->fd = d->efd = d->lowfd = -1;
    d->batch_s = batch_s;
    d->max_sleep_s = max_sleep_s;
    pthread_mutex_init(&d->mu, NULL);
    for (int i = 0; i < n; i++) d->cls[i].dl = d;
    return d;
}

const char *dl_error(dl *d) { return d->err; }

void dl_class_init(dl *d, int i, int queue, int max_len, int gso) {
    dl_class *c = &d->cls[i];
    c->queue = queue;
    c->max_len = max_len;
    c->gso = gso;
}

/* New parameters for class i (a profile change), with the first draws of its freshly seeded
 * generators (dn delays, ln loss decisions), as the Python loop re-seeds on a reload: the
 * rings restart with those draws, so no packet meets an empty ring in between. Held packets
 * keep their due times, and FIFO order holds across the change. */
void dl_class_config(dl *d, int i, double delay_s, int delay_stream, int loss_stream,
                     int reorder, const double *dv, int dn, const uint8_t *lv, int ln,
                     double rate, uint64_t limit, int mtu) {
    pthread_mutex_lock(&d->mu);
    dl_class *c = &d->cls[i];
    c->rate = rate; /* busy_until stays: the link is as busy as it was */
    c->limit = limit;
    c->mtu = mtu;
    c->delay_s = delay_s;
    c->delay_stream = delay_stream;
    c->loss_stream = loss_stream;
    c->reorder = reorder;
    c->dr = c->dw = c->lr = c->lw = 0;
    for (int k = 0; k < dn && k < RING; k++) c->dring[c->dw++] = dv[k];
    for (int k = 0; k < ln && k < RING; k++) c->lring[c->lw++] = lv[k];
    pthread_mutex_unlock(&d->mu);
}

void dl_set_batch(dl *d, int ok) {
    pthread_mutex_lock(&d->mu);
    d->batch_ok = ok;
    pthread_mutex_unlock(&d->mu);
}

/* How many draws stream `which` (0 delay, 1 loss) of class i can take now. */
int dl_space(dl *d, int i, int which) {
    pthread_mutex_lock(&d->mu);
    dl_class *c = &d->cls[i];
    uint64_t used = which ? c->lw - c->lr : c->dw - c->dr;
    pthread_mutex_unlock(&d->mu);
    return (int)(RING - used);
}

/* The draws a ring holds (RING), for the status. */
int dl_ring_size(void) { return RING; }

int dl_feed_delay(dl *d, int i, const double *v, int n) {
    pthread_mutex_lock(&d->mu);
    dl_class *c = &d->cls[i];
    int k = 0;
    for (; k < n && c->dw - c->dr < RING; k++) c->dring[c->dw++ & (RING - 1)] = v[k];
    pthread_mutex_unlock(&d->mu);
    return k;
}

int dl_feed_loss(dl *d, int i, const uint8_t *v, int n) {
    pthread_mutex_lock(&d->mu);
    dl_class *c = &d->cls[i];
    int k = 0;
    for (; k < n && c->lw - c->lr < RING; k++) c->lring[c->lw++ & (RING - 1)] = v[k];
    pthread_mutex_unlock(&d->mu);
    return k;
}

/* Copies of every class's counters (out[n]) and the transport's (wakeups, overruns, verdict
 * errors). */
void dl_snapshot(dl *d, dl_counters *out, uint64_t *transport) {
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < d->n; i++) out[i] = d->cls[i].c;
    transport[0] = d->wakeups;
    transport[1] = d->overruns;
    transport[2] = d->errors;
    pthread_mutex_unlock(&d->mu);
}

static void verdict(dl *d, dl_class *c, uint32_t id, int v) {
    if (nfq_set_verdict(c->qh, id, (uint32_t)v, 0, NULL) < 0) d->errors++;
}

/* Held packets: a FIFO ring (capacity a power of two) or a min-heap; both grow on demand
 * (the kernel queue's max_len bounds them in practice). */
static int fifo_push(dl_class *c, double due, uint32_t id) {
    if (c->flen == c->fcap) {
        size_t ncap = c->fcap ? 2 * c->fcap : 1024;
        held_t *nb = malloc(ncap * sizeof *nb);
        if (!nb) return -1;
        for (size_t k = 0; k < c->flen; k++) nb[k] = c->fifo[(c->fhead + k) & (c->fcap - 1)];
        free(c->fifo);
        c->fifo = nb;
        c->fcap = ncap;
        c->fhead = 0;
    }
    c->fifo[(c->fhead + c->flen) & (c->fcap - 1)] = (held_t){due, id};
    c->flen++;
    return 0;
}

static int heap_push(dl_class *c, double due, uint32_t id) {
    if (c->hlen == c->hcap) {
        size_t ncap = c->hcap ? 2 * c->hcap : 1024;
        held_t *nb = realloc(c->heap, ncap * sizeof *nb);
        if (!nb) return -1;
        c->heap = nb;
        c->hcap = ncap;
    }
    size_t k = c->hlen++;
    while (k > 0) {
        size_t p = (k - 1) / 2;
        if (c->heap[p].due <= due) break;
        c->heap[k] = c->heap[p];
        k = p;
    }
    c->heap[k] = (held_t){due, id};
    return 0;
}

static held_t heap_pop(dl_class *c) {
    held_t top = c->heap[0], last = c->heap[--c->hlen];
    size_t k = 0, n = c->hlen;
    if (n == 0) return top;
    for (;;) {
        size_t l = 2 * k + 1, r = l + 1, m = k;
        double md = last.due;
        if (l < n && c->heap[l].due < md) m = l, md = c->heap[l].due;
        if (r < n && c->heap[r].due < md) m = r;
        if (m == k) break;
        c->heap[k] = c->heap[m];
        k = m;
    }
    c->heap[k] = last;
    return top;
}

/* Tell the feeding thread once that some ring is below half full; it tops every ring up
 * and re-arms (dl_low_reset). */
static void low(dl *d, uint64_t left) {
    if (left < RING / 2 && !d->low_pending) {
        uint64_t one = 1;
        d->low_pending = 1;
        if (write(d->lowfd, &one, sizeof one) < 0) d->low_pending = 0;
    }
}

static int lost(dl_class *c) {
    if (!c->loss_stream) return 0;
    if (c->lr == c->lw) {
        c->c.underruns++;
        return 0;
    }
    int v = c->lring[c->lr++ & (RING - 1)];
    low(c->dl, c->lw - c->lr);
    return v;
}

static double delay(dl_class *c) {
    if (!c->delay_stream) return c->delay_s;
    if (c->dr == c->dw) {
        c->c.underruns++;
        return c->delay_s;
    }
    double v = c->dring[c->dr++ & (RING - 1)];
    low(c->dl, c->dw - c->dr);
    return v;
}

/* shaper.ip_lengths: (packet length, header length) from the first bytes of an IP packet;
 * 0 when they are no IP packet. */
static int ip_lengths(const unsigned char *p, int n, int *hl) {
    int len, h, proto;
    if (n < 20) return 0;
    if (p[0] >> 4 == 4) {
        len = p[2] << 8 | p[3];
        h = (p[0] & 0x0F) * 4;
        proto = p[9];
    } else if (p[0] >> 4 == 6 && n >= 40) {
        len = 40 + (p[4] << 8 | p[5]);
        h = 40;
        proto = p[6];
    } else {
        return 0;
    }
    if (proto == 6 && n >= h + 13)
        h += (p[h + 12] >> 4) * 4;
    else if (proto == 17)
        h += 8;
    *hl = h;
    return len;
}

/* shaper.frame_bytes: the Ethernet frames of an IP packet, a GSO packet as its segments. */
static double frame_bytes(int len, int h, int mtu) {
    if (len <= mtu || h <= 0 || h >= mtu) return len + ETH_HEADER;
    int segs = (len - h + (mtu - h) - 1) / (mtu - h);
    return (double)len + (double)(segs - 1) * h + (double)segs * ETH_HEADER;
}

/* The frames on_packet charges for the packet whose first n bytes are p (for tests). */
double dl_frame_bytes(const unsigned char *p, int n, int mtu) {
    int hl = 0, len = ip_lengths(p, n, &hl);
    return frame_bytes(len, hl, mtu);
}

/* shaper.Shaper.admit: when the packet is through the link, or -1: dropped at the limit. */
static double shape(dl_class *c, double arrived, double frames) {
    double start = c->busy_until > arrived ? c->busy_until : arrived;
    if (start > arrived && (start - arrived) * c->rate + frames > (double)c->limit) return -1;
    c->busy_until = start + frames / c->rate;
    return c->busy_until;
}

/* A rated class's admission of the packet whose first n bytes are pl: counted as unparsed
 * when its IP length cannot be read (charged a bare frame; calibration judges the rate),
 * then through shape(). */
static double admit(dl_class *c, double arrived, const unsigned char *pl, int n) {
    int hl = 0, len = n > 0 ? ip_lengths(pl, n, &hl) : 0;
    if (len == 0) c->c.unparsed++;
    return shape(c, arrived, frame_bytes(len, hl, c->mtu));
}

/* admit() for class i (for tests: the counters are read with dl_snapshot). */
double dl_admit(dl *d, int i, double arrived, const unsigned char *p, int n) {
    pthread_mutex_lock(&d->mu);
    double through = admit(&d->cls[i], arrived, p, n);
    pthread_mutex_unlock(&d->mu);
    return through;
}

/* One queued packet: dropped by the loss model or the rate's limit, passed at once (nothing
 * held and already due) or held; it is through the rate and its delay counts from its kernel
 * receive stamp (delayline.on_packet). */
static int on_packet(struct nfq_q_handle *qh, struct nfgenmsg *msg, struct nfq_data *nfa,
                     void *data) {
    (void)qh;
    (void)msg;
    dl_class *c = data;
    dl *d = c->dl;
    struct nfqnl_msg_packet_hdr *ph = nfq_get_msg_packet_hdr(nfa);
    if (!ph) return 0;
    uint32_t id = ntohl(ph->packet_id);
    double now = d->now, arrived = now;
    struct timeval tv;
    d->moved++;
    if (nfq_get_timestamp(nfa, &tv) == 0) {
        double a = (double)tv.tv_sec + tv.tv_usec * 1e-6 - d->offset;
        if (now - 1.0 < a && a <= now) { /* a receive stamp, not some other clock */
            arrived = a;
            c->c.stamped++;
        }
    }
    c->c.seen++;
    if (lost(c)) {
        verdict(d, c, id, NF_DROP);
        c->c.dropped_loss++;
        return 0;
    }
    if (c->rate > 0) {
        unsigned char *pl;
        int n = nfq_get_payload(nfa, &pl);
        double through = admit(c, arrived, pl, n);
        if (through < 0) {
            verdict(d, c, id, NF_DROP);
            c->c.dropped_rate++;
            return 0;
        }
        arrived = through;
    }
    double due = arrived + delay(c);
    if (c->reorder) {
        if (due > c->last_due) c->last_due = due;
    } else {
        if (due < c->last_due) due = c->last_due; /* FIFO: never overtake the packet ahead */
        c->last_due = due;
    }
    if (due <= now && c->c.held_now == 0) {
        verdict(d, c, id, NF_ACCEPT);
        double late = now - due;
        c->c.passed++;
        c->c.late_sum_s += late;
        c->c.released_now++;
        if (late > c->c.late_max_s) c->c.late_max_s = late;
        return 0;
    }
    if ((c->reorder ? heap_push(c, due, id) : fifo_push(c, due, id)) < 0) {
        verdict(d, c, id, NF_ACCEPT); /* out of memory: pass it rather than lose it */
        d->errors++;
        return 0;
    }
    c->c.held_now++;
    c->c.held_total++;
    if (c->c.held_now > c->c.max_held) c->c.max_held = c->c.held_now;
    return 0;
}

/* Accept every held packet due by `upto`: a FIFO class with one batch verdict (its due
 * packets are the oldest ids it holds), a reordering class one by one. */
static uint64_t release_due(dl *d, double now, double upto) {
    uint64_t total = 0;
    for (int i = 0; i < d->n; i++) {
        dl_class *c = &d->cls[i];
        uint64_t n = 0;
        if (c->flen && c->fifo[c->fhead].due <= upto) {
            double late = now - c->fifo[c->fhead].due; /* the oldest is the latest */
            uint32_t last = 0;
            if (late > c->c.late_max_s) c->c.late_max_s = late;
            while (c->flen && c->fifo[c->fhead].due <= upto) {
                held_t h = c->fifo[c->fhead];
                c->fhead = (c->fhead + 1) & (c->fcap - 1);
                c->flen--;
                late = now - h.due;
                c->c.late_sum_s += late;
                last = h.id;
                n++;
            }
            if (late < c->c.early_max_s) c->c.early_max_s = late; /* the newest: earliest */
            if (nfq_set_verdict_batch(c->qh, last, NF_ACCEPT) < 0) d->errors++;
        }
        while (c->hlen && c->heap[0].due <= upto) {
            held_t h = heap_pop(c);
            double late = now - h.due;
            verdict(d, c, h.id, NF_ACCEPT);
            c->c.late_sum_s += late;
            if (late > c->c.late_max_s) c->c.late_max_s = late;
            if (late < c->c.early_max_s) c->c.early_max_s = late;
            n++;
        }
        if (n) {
            c->c.held_now -= n;
            c->c.passed += n;
            total += n;
        }
    }
    return total;
}

static double next_due(dl *d) {
    double due = 1e300;
    for (int i = 0; i < d->n; i++) {
        dl_class *c = &d->cls[i];
        if (c->flen && c->fifo[c->fhead].due < due) due = c->fifo[c->fhead].due;
        if (c->hlen && c->heap[0].due < due) due = c->heap[0].due;
    }
    return due;
}

/* Bind every class's queue: HEAD bytes copied, max_len waiting, GSO packets whole where asked.
 * Returns 0, or -1 with dl_error() saying what failed. */
int dl_open(dl *d, int rcvbuf) {
    d->now = mono(); /* packets of a queue bound already may arrive while the next binds */
    d->offset = wall() - d->now;
    d->h = nfq_open();
    if (!d->h) {
        snprintf(d->err, sizeof d->err, "nfq_open: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < d->n; i++) {
        dl_class *c = &d->cls[i];
        c->qh = nfq_create_queue(d->h, (uint16_t)c->queue, on_packet, c);
        if (!c->qh) {
            snprintf(d->err, sizeof d->err, "NFQUEUE %d: bind: %s", c->queue, strerror(errno));
            return -1;
        }
        if (nfq_set_mode(c->qh, NFQNL_COPY_PACKET, HEAD) < 0 ||
            nfq_set_queue_maxlen(c->qh, (uint32_t)c->max_len) < 0 ||
            (c->gso && nfq_set_queue_flags(c->qh, NFQA_CFG_F_GSO, NFQA_CFG_F_GSO) < 0)) {
            snprintf(d->err, sizeof d->err, "NFQUEUE %d: configure: %s", c->queue,
                     strerror(errno));
            return -1;
        }
    }
    d->fd = nfq_fd(d->h);
    if (rcvbuf > 0) nfnl_rcvbufsiz(nfq_nfnlh(d->h), (unsigned int)rcvbuf);
    d->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    d->lowfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->efd < 0 || d->lowfd < 0) {
        snprintf(d->err, sizeof d->err, "eventfd: %s", strerror(errno));
        return -1;
    }
    return 0;
}

/* The descriptor that becomes readable when a ring is below half full. */
int dl_low_fd(dl *d) { return d->lowfd; }

/* After a top-up: drain the signal and re-arm it. */
void dl_low_reset(dl *d) {
    uint64_t v;
    pthread_mutex_lock(&d->mu);
    if (read(d->lowfd, &v, sizeof v) < 0) { /* nothing pending */
    }
    d->low_pending = 0;
    pthread_mutex_unlock(&d->mu);
}

void dl_stop(dl *d) {
    d->stop = 1;
    uint64_t one = 1;
    if (d->efd >= 0 && write(d->efd, &one, sizeof one) < 0) { /* the flag is enough */
    }
}

/* The loop (delayline.DelayLine.run): read what the kernel queued, release what is due
 * within half the batch window, sleep until the next due time, a wake-up, or at most
 * max_sleep_s; after a pass that moved packets the next pass is one window later (arrivals
 * wait, their stamps keep the delay exact; releases due meanwhile are at most half a window
 * late), so a dense flow costs one pass per window. On return every held packet has been
 * released. */
int dl_run(dl *d, int rt_priority, int nice) {
    static char bufs[BATCH][DGRAM] __attribute__((aligned(8)));
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    for (int k = 0; k < BATCH; k++) {
        iov[k] = (struct iovec){bufs[k], DGRAM};
        msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
    }
    double busy_until = 0.0, half = d->batch_s / 2;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    setpriority(PRIO_PROCESS, (id_t)tid, nice); /* best effort: timers matter here */
    if (rt_priority > 0) {
        struct sched_param sp = {.sched_priority = rt_priority};
        pthread_setschedparam(pthread_self(), SCHED_RR, &sp);
    }
    int rc = 0;
    while (!d->stop) {
        pthread_mutex_lock(&d->mu);
        double now = mono();
        uint64_t before = d->moved;
        d->now = now;
        d->offset = wall() - now;
        for (int k = 0; k < READS_PER_PASS; k++) { /* one syscall for up to BATCH packets */
            int got = recvmmsg(d->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
            if (got < 0) {
                if (errno == ENOBUFS) { /* the kernel counts these as user drops */
                    d->overruns++;
                    continue;
                }
                if (errno != EAGAIN && errno != EINTR) {
                    snprintf(d->err, sizeof d->err, "recvmmsg: %s", strerror(errno));
                    rc = -1;
                }
                break;
            }
            for (int m = 0; m < got; m++) /* < 0: the kernel's error reply to a verdict */
                if (nfq_handle_packet(d->h, bufs[m], (int)msgs[m].msg_len) < 0) d->errors++;
            if (got < BATCH) break;
        }
        d->moved += release_due(d, now, now + half);
        int moved = d->moved != before;
        if (moved && d->batch_ok) busy_until = now + d->batch_s;
        double wake = next_due(d);
        pthread_mutex_unlock(&d->mu);
        if (rc) break;
        if (wake > now + d->max_sleep_s) wake = now + d->max_sleep_s;
        struct pollfd fds[2] = {{.fd = d->efd, .events = POLLIN}, {.fd = d->fd, .events = POLLIN}};
        int nfds = 2;
        if (now < busy_until) { /* one pass per window: what falls due meanwhile waits */
            nfds = 1;
            wake = busy_until;
        }
        double dt = wake - now;
        if (dt < 0) dt = 0;
        struct timespec ts = {(time_t)dt, (long)((dt - (double)(time_t)dt) * 1e9)};
        ppoll(fds, (nfds_t)nfds, &ts, NULL);
        d->wakeups++;
    }
    pthread_mutex_lock(&d->mu);
    d->now = mono();
    release_due(d, d->now, 1e300);
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Unbind every queue (the kernel would on close too), close, free. */
void dl_close(dl *d) {
    for (int i = 0; i < d->n; i++) {
        dl_class *c = &d->cls[i];
        if (c->qh) nfq_destroy_queue(c->qh);
        free(c->fifo);
        free(c->heap);
    }
    if (d->h) nfq_close(d->h);
    if (d->efd >= 0) close(d->efd);
    if (d->lowfd >= 0) close(d->lowfd);
    pthread_mutex_destroy(&d->mu);
    free(d->cls);
    free(d);
}
