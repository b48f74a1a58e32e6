/* Reference for the cold-start rows: a bare posix_spawn loop of N children (no pipes, no log,
 * no bookkeeping). Prints "ready <ms>" once every child exists, waits for a line (or EOF) on stdin,
 * then SIGKILLs and reaps them all.   usage: spawn_loop N PROGRAM [EXTRA_FDS]
 * EXTRA_FDS: open that many O_CLOEXEC descriptors first, as a supervisor holding pipes and log files
 * per child does (each spawn then copies and closes the whole table). */
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char** environ;

int main(int argc, char** argv) {
  if (argc != 3 && argc != 4) { fprintf(stderr, "usage: spawn_loop N PROGRAM [EXTRA_FDS]\n"); return 2; }
  int n = atoi(argv[1]);
  for (int i = 0, extra = argc == 4 ? atoi(argv[3]) : 0; i < extra; i++) {
    if (open("/dev/null", O_RDONLY | O_CLOEXEC) < 0) { perror("open"); return 1; }
  }
  pid_t* pids = calloc((size_t)n, sizeof *pids);
  struct timespec a, b;
  clock_gettime(CLOCK_MONOTONIC, &a);
  char* args[] = {argv[2], NULL};
  for (int i = 0; i < n; i++) {
    if (posix_spawn(&pids[i], argv[2], NULL, NULL, args, environ) != 0) { perror("posix_spawn"); n = i; break; }
  }
  clock_gettime(CLOCK_MONOTONIC, &b);
  printf("ready %.3f\n", (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6);
  fflush(stdout);
  char line[16];
  (void)!fgets(line, sizeof line, stdin);
  for (int i = 0; i < n; i++) kill(pids[i], SIGKILL);
  for (int i = 0; i < n; i++) waitpid(pids[i], NULL, 0);
  return 0;
}
