/* The managed child of every benchmark, identical for provisr and each peer (exec'd directly,
 * no shell). Behaviour from the environment, so s6/runit/daemontools can run it as a `run` symlink:
 *   (nothing)            sleep until killed, like `sleep infinity`
 *   BCHILD_STAMP=FILE    append "S <CLOCK_MONOTONIC ns>" to FILE at start (O_APPEND, one write)
 *   BCHILD_LIFE_MS=N     then live N ms, append "E <ns>" and exit 0 (restart latency)
 *   BCHILD_CAT=FILE      copy FILE to stdout in 64 KiB writes like cat, then sleep (log throughput)
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void stamp(const char* path, char kind) {
  char line[64];
  int n = snprintf(line, sizeof line, "%c %lld %d\n", kind, now_ns(), (int)getpid());
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return;
  if (write(fd, line, (size_t)n) != n) { /* best effort: a lost stamp shows as a missing sample */ }
  close(fd);
}

int main(void) {
  const char* stamp_path = getenv("BCHILD_STAMP");
  const char* life = getenv("BCHILD_LIFE_MS");
  const char* cat = getenv("BCHILD_CAT");
  if (stamp_path) stamp(stamp_path, 'S');
  if (cat) {
    int fd = open(cat, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 1;
    static char buf[65536];
    for (;;) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) break;
      for (ssize_t off = 0; off < n;) {
        ssize_t w = write(1, buf + off, (size_t)(n - off));
        if (w <= 0) return 1;
        off += w;
      }
    }
    close(fd);
    if (stamp_path) stamp(stamp_path, 'C');
  }
  if (life) {
    long ms = strtol(life, NULL, 10);
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);  /* the child's lifetime is the measured workload's parameter */
    if (stamp_path) stamp(stamp_path, 'E');
    return 0;
  }
  for (;;) pause();
}
