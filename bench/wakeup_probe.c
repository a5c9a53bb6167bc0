// What a thread wake-up costs on this machine: two threads pass one byte back and forth
// through two pipes, 20 000 times, and the round trips' p50/p99/p99.9 are printed.
// With GAP_US = 0 the sender goes straight on, so the echo thread tends to sleep on the other
// CPU and every hop is a cross-CPU wake-up; pinned to one CPU (taskset -c 0) both threads
// share it. On a VM whose idle vCPUs halt without polling, the difference is the price of
// waking a sleeping vCPU, which every message that crosses threads pays.
// Build and run: cc -O2 -pthread bench/wakeup_probe.c -o /tmp/wakeup_probe
//   /tmp/wakeup_probe 0; taskset -c 0 /tmp/wakeup_probe 0; /tmp/wakeup_probe 500 (GAP_US)
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

enum { N = 20000 };
static int ping[2], pong[2];

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void *echo(void *arg) {
    (void)arg;
    char c;
    for (int i = 0; i < N; i++) {
        if (read(ping[0], &c, 1) != 1 || write(pong[1], &c, 1) != 1) break;
    }
    return NULL;
}

static int cmp(const void *a, const void *b) {
    double d = *(const double *)a - *(const double *)b;
    return (d > 0) - (d < 0);
}

int main(int argc, char **argv) {
    int gap = argc > 1 ? atoi(argv[1]) : 0;
    if (pipe(ping) || pipe(pong)) { perror("pipe"); return 1; }
    pthread_t t;
    if (pthread_create(&t, NULL, echo, NULL)) { perror("pthread_create"); return 1; }
    double *rtt = malloc(N * sizeof *rtt);
    if (!rtt) return 1;
    char c = 'x';
    for (int i = 0; i < N; i++) {
        if (gap) usleep(gap);
        double s = now_us();
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) { perror("pipe io"); return 1; }
        rtt[i] = now_us() - s;
    }
    pthread_join(t, NULL);
    qsort(rtt, N, sizeof *rtt, cmp);
    printf("gap %d us: round trip p50 %.1f  p99 %.1f  p99.9 %.1f us\n", gap, rtt[N / 2],
           rtt[N * 99 / 100], rtt[N * 999 / 1000]);
    free(rtt);
    return 0;
}
