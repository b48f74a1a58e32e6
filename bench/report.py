#!/usr/bin/python3
"""Turns bench.py's samples.jsonl into bench/RESULTS.md (and the scale plot through gnuplot)."""
import argparse
import json
import os
import platform
import statistics
import subprocess
import time

PEERS = ["provisr", "supervisord", "pm2", "s6", "runit", "daemontools"]


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=30).stdout.strip()
    except Exception as e:  # noqa: BLE001
        return f"? ({e})"


def dpkg_version(pkg):
    return sh(f"dpkg-query -W -f='${{Version}}' {pkg} 2>/dev/null") or "not installed"


def load(out):
    rows = []
    with open(os.path.join(out, "samples.jsonl")) as f:
        for line in f:
            rows.append(json.loads(line))
    return rows


class Stats:
    def __init__(self, rows):
        self.rows = rows

    def values(self, workload, peer, metric, **where):
        return [r["value"] for r in self.rows if r["workload"] == workload and r["peer"] == peer
                and r["metric"] == metric and all(r.get(k) == v for k, v in where.items())]

    def errors(self, workload, peer):
        return [r["value"] for r in self.rows if r["workload"] == workload and r["peer"] == peer
                and r["metric"] == "error"]

    def med(self, workload, peer, metric, **where):
        v = self.values(workload, peer, metric, **where)
        return statistics.median(v) if v else None

    def cell(self, workload, peer, metric, fmt, **where):
        v = self.values(workload, peer, metric, **where)
        if not v:
            e = self.errors(workload, peer)
            return f"failed: {e[0][:100]}" if e else "—"
        m = statistics.median(v)
        if len(v) == 1:
            return fmt(m)
        return f"{fmt(m)} ({fmt(min(v))}–{fmt(max(v))}, n={len(v)})"


def s_fmt(x):
    return f"{x:.3f} s"


def ms_fmt(x):
    return f"{x:.2f} ms" if x < 100 else f"{x:.0f} ms"


def mib_fmt(x):
    return f"{x:.1f} MiB"


def ratio(a, b):
    return f"{a / b:.2f}×" if a is not None and b not in (None, 0) else "—"


def verdict(ok):
    return "(info)" if ok is None else ("**met**" if ok else "**missed**")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--results", required=True)
    ap.add_argument("--plot", required=True)
    ap.add_argument("--bin", required=True)
    ap.add_argument("--pm2", required=True)
    a = ap.parse_args()
    st = Stats(load(a.out))
    have = {r["workload"] for r in st.rows}
    L = []
    w = L.append

    w("# provisr against its peers (issue 8)")
    w("")
    w("Produced by `scripts/bench.sh` (one run: every peer and provisr on the same workloads, one "
      "after the other, in the same session). Absolute times on this shared machine are noisy; "
      "compare the **ratios** within the run. Cells are `median (min–max, n=samples)`.")
    w("")
    w("## Machine and versions")
    w("")
    cpu = sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    ram = sh("free -m | awk '/Mem:/ {print $2}'")
    osname = sh(". /etc/os-release; echo $PRETTY_NAME")
    gt = os.path.join(a.out, "git.txt")
    rev = open(gt).read().strip() if os.path.exists(gt) else sh(f"git -C {os.path.dirname(a.bin)}/.. describe --always --dirty 2>/dev/null || true")
    btype = sh(f"grep CMAKE_BUILD_TYPE: {os.path.dirname(a.bin)}/CMakeCache.txt | cut -d= -f2")
    w(f"- date: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; kernel {platform.release()}; "
      f"{os.cpu_count()} CPUs ({cpu}); RAM {ram} MiB; {osname}")
    for f, label in (("load-before.txt", "load before"), ("load-after.txt", "load after")):
        p = os.path.join(a.out, f)
        if os.path.exists(p):
            w(f"- {label}: `{open(p).read().strip()}`")
    loads = [r for r in st.rows if r["metric"] == "loadavg"]
    if loads:
        w("- load average (1 min) at the start of each workload: " +
          ", ".join(f"{r['workload']} {r['value']}" for r in loads))
    w(f"- provisr: `{sh(a.bin + '/provisr version')}` (git {rev}), build type {btype}")
    w(f"- supervisord {sh('supervisord --version')} (Debian {dpkg_version('supervisor')}); "
      f"PM2 {pm2_version(a.pm2)} (npm) on node {sh('node --version')}; "
      f"s6 {dpkg_version('s6')}; runit {dpkg_version('runit')}; daemontools {dpkg_version('daemontools')}")
    w(f"- tools: {sh('hyperfine --version')}, wrk {dpkg_version('wrk')}, gnuplot {dpkg_version('gnuplot-nox')}")
    w("")

    w("## Results")
    w("")
    hdr = "| workload | " + " | ".join(PEERS) + " | reference | provisr ÷ reference | target | provisr ÷ best peer | target met |"
    w(hdr)
    w("|" + "---|" * (hdr.count("|") - 1))

    def row(label, workload, metric, fmt, ref_label, ref, target_text, ok, lower_better=True, **where):
        cells = [st.cell(workload, p, metric, fmt, **where) for p in PEERS]
        pv = st.med(workload, "provisr", metric, **where)
        others = [st.med(workload, p, metric, **where) for p in PEERS[1:]]
        others = [o for o in others if o is not None]
        best = (min(others) if lower_better else max(others)) if others else None
        w(f"| {label} | " + " | ".join(cells) + f" | {ref_label} | {ratio(pv, ref) if ref else '—'} | "
          f"{target_text} | {ratio(pv, best) if best else '—'} | {verdict(ok(pv)) if pv is not None else ('**missed** (did not finish)' if st.errors(workload, 'provisr') else '—')} |")

    if "start" in have:
        bare = st.med("start", "bare", "seconds")
        row("cold start: until 500 children run", "start", "seconds", s_fmt,
            f"bare posix_spawn loop {st.cell('start', 'bare', 'seconds', s_fmt)}", bare,
            "≤ 1.3× bare loop", lambda v: bare is not None and v <= 1.3 * bare)
        row("cold start: CPU of the supervisor's processes", "start", "cpu_seconds", s_fmt, "", None, "", lambda v: None)
        row("stop all 500", "stop", "seconds", s_fmt, "", None, "≤ 0.15 s", lambda v: v <= 0.15)
    if "idle" in have:
        row("idle, 100 children: CPU over 10 s", "idle", "cpu_seconds", lambda x: f"{x:.3f} s", "", None,
            "0.000 s", lambda v: v == 0)
        row("idle, 100 children: PSS of the supervisor", "pss", "pss_mib", mib_fmt, "", None, "≤ 8 MiB",
            lambda v: v <= 8)
    if "status" in have:
        row("CLI status of 100, per call", "status", "seconds", lambda x: ms_fmt(x * 1000), "", None, "≤ 4 ms",
            lambda v: v <= 0.004)
        row("CLI status of 100: CPU (user+sys) per call", "status", "cpu_ms", ms_fmt, "", None, "", lambda v: None)
    if "restart" in have:
        row("restart latency (child lives 0.2 s)", "restart", "ms", ms_fmt, "", None, "≤ 3 ms median",
            lambda v: v <= 3)
    if "log" in have:
        ref = st.med("log", "cat-relay", "seconds")
        row("log: 200 MB of 100-byte lines to the file", "log", "seconds", s_fmt,
            f"`child \\| cat > file` {st.cell('log', 'cat-relay', 'seconds', s_fmt)}", ref,
            "≤ 1.05× cat relay", lambda v: ref is not None and v <= 1.05 * ref)
    if "http" in have:
        p99 = st.med("http", "provisr", "p99_ms")
        row("HTTP GET /status?name= (500 managed), req/s", "http", "req_per_s", lambda x: f"{x:.0f}", "", None,
            "≥ 20k req/s", lambda v: v >= 20000, lower_better=False)
        row("HTTP GET /status?name=: CPU of provisr's processes per request", "http", "cpu_us_per_req",
            lambda x: f"{x:.0f} µs", "", None, "", lambda v: None)
        row("HTTP GET /status?name=, p99", "http", "p99_ms", ms_fmt, "", None, "≤ 5 ms", lambda v: v <= 5)
    if "scale" in have:
        b5 = st.med("scale", "bare", "start_s", n=5000)
        row("scale 5000: start", "scale", "start_s", s_fmt,
            f"bare loop of 5000 {st.cell('scale', 'bare', 'start_s', s_fmt, n=5000)}", b5, "≤ 1.3× bare loop",
            lambda v: b5 is not None and v <= 1.3 * b5, n=5000)
        row("scale 5000: status of all (HTTP)", "scale", "status_http_s", lambda x: ms_fmt(x * 1000), "", None,
            "≤ 50 ms", lambda v: v <= 0.05, n=5000)
        row("scale 5000: status of all (CLI)", "scale", "status_cli_s", lambda x: ms_fmt(x * 1000), "", None,
            "≤ 50 ms", lambda v: v <= 0.05, n=5000)
        row("scale 5000: master RSS per instance", "scale", "master_rss_per_inst_kib", lambda x: f"{x:.1f} KiB",
            "", None, "≤ 64 KiB", lambda v: v <= 64, n=5000)
    w("")

    if "scale" in have:
        w("## Scaling, 100 → 5000 instances (provisr)")
        w("")
        w("| instances | bare loop start | provisr start | ratio | status all, HTTP | status all, CLI | "
          "master RSS | per instance | growth per added instance | spawner RSS | gateway RSS |")
        w("|---|---|---|---|---|---|---|---|---|---|---|")
        ns = sorted({r["n"] for r in st.rows if r["workload"] == "scale" and "n" in r})
        dat = []
        n0 = ns[0] if ns else None
        rss0 = st.med("scale", "provisr", "master_rss_kib", n=n0) if ns else None
        for n in ns:
            b = st.med("scale", "bare", "start_s", n=n)
            p = st.med("scale", "provisr", "start_s", n=n)
            sh_ = st.med("scale", "provisr", "status_http_s", n=n)
            sc = st.med("scale", "provisr", "status_cli_s", n=n)
            rss = st.med("scale", "provisr", "master_rss_kib", n=n)
            sp = st.med("scale", "provisr", "spawner_rss_kib", n=n)
            gw = st.med("scale", "provisr", "gateway_rss_kib", n=n)
            f = lambda x, g: g(x) if x is not None else "—"  # noqa: E731
            w(f"| {n} | {f(b, s_fmt)} | {f(p, s_fmt)} | {ratio(p, b)} | {f(sh_, lambda x: ms_fmt(x * 1000))} | "
              f"{f(sc, lambda x: ms_fmt(x * 1000))} | {f(rss, lambda x: f'{x / 1024:.1f} MiB')} | "
              f"{f(rss, lambda x: f'{x / n:.1f} KiB')} | "
              f"{f(rss, lambda x: f'{(x - rss0) / (n - n0):.1f} KiB' if rss0 is not None and n > n0 else '—')} | {f(sp, lambda x: f'{x / 1024:.1f} MiB')} | "
              f"{f(gw, lambda x: f'{x / 1024:.1f} MiB')} |")
            if None not in (b, p, sh_, rss):
                dat.append((n, b, p, sh_ * 1000, (sc or 0) * 1000, rss / n))
        w("")
        if dat and plot(dat, a.plot, a.out):
            w(f"![scaling]({os.path.basename(a.plot)})")
            w("")
    w("Where provisr's time and memory go on the missed targets, with suggested fixes: "
      "[PROFILE.md](PROFILE.md) (`bench/profile.py`).")
    w("")
    w(METHOD)
    with open(a.results, "w") as f:
        f.write("\n".join(L) + "\n")


def pm2_version(pm2):
    p = os.path.join(os.path.dirname(os.path.realpath(pm2)), "..", "package.json")
    try:
        with open(p) as f:
            return json.load(f)["version"]
    except OSError:
        return "?"


def plot(dat, png, out):
    if subprocess.run("command -v gnuplot", shell=True, stdout=subprocess.DEVNULL).returncode:
        return False
    d = os.path.join(out, "scale.dat")
    with open(d, "w") as f:
        for row in dat:
            f.write(" ".join(str(x) for x in row) + "\n")
    gp = f"""set terminal pngcairo size 1200,400 noenhanced
set output '{png}'
set multiplot layout 1,3
set xlabel 'instances (log scale)'
set logscale x
set xtics (100, 500, 1000, 2000, 5000)
set xrange [80:6000]
set key left top
set grid
set title 'start until all running (s)'
plot '{d}' using 1:2 with linespoints title 'bare posix_spawn loop', '{d}' using 1:3 with linespoints title 'provisr'
set title 'status of all (ms)'
plot '{d}' using 1:4 with linespoints title 'HTTP GET /status', '{d}' using 1:5 with linespoints title 'provisr status (CLI)'
set title 'master RSS per instance (KiB)'
plot '{d}' using 1:6 with linespoints title 'master RSS / instances'
"""
    r = subprocess.run(["gnuplot"], input=gp, text=True, stderr=subprocess.PIPE)
    if r.returncode:
        gp = gp.replace("pngcairo", "png")
        r = subprocess.run(["gnuplot"], input=gp, text=True, stderr=subprocess.PIPE)
    return r.returncode == 0


METHOD = """## Method

Command: `scripts/bench.sh` (all workloads) or `scripts/bench.sh WORKLOAD` (one of `start idle status
restart log http scale`); `--reps N` (default 3), `--peers provisr,s6,...`. The driver is
`bench/bench.py`, the table is made by `bench/report.py`; raw samples stay in
`build-bench/bench/out-*/samples.jsonl`.

- **The child** is `bench/child.c` (`bchild`), the same binary for every supervisor, exec'd directly
  (no shell): with an empty environment it sleeps until killed, like `sleep infinity`. For
  s6/runit/daemontools each service directory's `run` is a symlink to it; when a workload needs
  environment variables (restart, log) `run` is a two-line `sh` wrapper that exports them and execs it.
  "Running" = that many live processes whose `/proc/PID/exe` is `bchild` (polled every 5 ms); for
  provisr additionally `GET /api/status?wildcard=*` reports every instance `running`.
- **Peer configurations** (fair, no artificial delay): supervisord `numprocs=N startsecs=0
  startretries=1000000 minfds=8192`, default per-process log files; PM2 one app per child
  (`interpreter: none, exec_mode: fork, min_uptime: 0, restart_delay: 0, max_restarts: 1000000`),
  own `PM2_HOME`; s6 `s6-svscan DIR`, runit `runsvdir -P DIR`, daemontools `svscan DIR`, one service
  directory per child, no logger except in the log workload; provisr one program with `instances =
  N`, `start_duration = "0"`, default logging (a file per instance).
- **cold start**: from launching the supervisor (`provisr serve`, `supervisord -n`, `pm2 start
  ecosystem.config.js`, `s6-svscan`, `runsvdir`, `svscan`) until 500 children run. Reference: the
  same measurement around `bench/spawn_loop.c` (a bare `posix_spawn` loop of 500 `bchild`).
- **stop all 500**: from the stop command (`provisr stop` (all, by priority), `supervisorctl stop
  all`, `pm2 stop all`, `printf d` into each `supervise/control` fifo (what `s6-svc -d` does; it takes one directory), `sv down DIRS`, `svc -d DIRS`) until no child lives.
- **idle CPU**: 100 children running, 2 s to settle, then utime+stime (from `/proc/PID/stat`) summed
  over the supervisor's own processes (the process tree under the supervisor minus the children; for
  PM2 the daemon from `PM2_HOME/pm2.pid`) at the start and end of a 10 s window; no client connected.
  Clock ticks are 10 ms, so 0.000 means less than one tick per process. **PSS**: `Pss` of
  `/proc/PID/smaps_rollup` summed over the same processes at the end of the window.
- **CLI status of 100**: `hyperfine -N --warmup 3 --runs 30` on `provisr status --api-url URL` (JSON
  output, not a terminal), `supervisorctl status`, `pm2 jlist`, `sv status DIRS`, `svstat DIRS`, and
  for s6 (`s6-svstat` takes one directory) a `sh` loop of 100 `s6-svstat`.
- **restart latency**: one child that appends `S <CLOCK_MONOTONIC ns>` when it starts and `E <ns>`
  just before it exits 0, 0.2 s later; auto-restart on with no delay (provisr `auto_restart = true,
  restart_interval = "0"`; supervisord `autorestart=true`; PM2 as above; s6/runit/daemontools always
  restart, with their built-in 1 s minimum between starts). Sample = next `S` − previous `E`, over
  8 s of restarts.
- **log throughput**: the child copies a 200 MB file of 100-byte lines to stdout in 64 KiB writes
  (like `cat`), recording its start time; the sample is from that start until the supervisor's
  log files (current + rotated) hold all 200 MB (polled every 5 ms). Rotation on at 16 MiB with 50
  backups where the peer has rotation: provisr `max_size_mb = 16, max_backups = 50`; supervisord
  `stdout_logfile_maxbytes=16MB`; s6 `s6-log n50 s16777215`; runit `svlogd` (`s16777215`, `n50`);
  daemontools `multilog s16777215 n50`. PM2 writes `out_file` without rotation (rotation needs the
  pm2-logrotate module). Reference: `child | cat > file`, measured the same way.
- **HTTP**: 500 instances running, `wrk -t2 -c10 -d5s --latency` with a Lua script cycling `GET
  /api/status?name=s-1..s-500`. provisr only (no peer has this API).
- **scale**: for 100, 500, 1000, 2000, 5000 instances: the bare loop and provisr's cold start as
  above, then the median of 5 `GET /api/status?wildcard=*` (all instances, JSON) and of 5 `provisr
  status` CLI calls, and `VmRSS` of provisr-master (and spawner, gateway) from `/proc`. To keep the
  run bounded, sizes stop growing once a start takes longer than `--scale-budget-s` (60 s; a start
  is abandoned after twice that) and the larger sizes are reported "not run".

## Known weaknesses of the harness

- The machine is a shared 2-core VM; other builds ran during the run (load averages above), so the
  min–max ranges are wide and overlap. Ratios within one run are the useful numbers.
- The run is driven from a non-interactive shell, not a terminal's foreground (PM2's restart latency
  was seen to depend on that).
- "Running" is detected by polling `/proc` every 5 ms (a scan costs ~5 ms at 500 processes, ~50 ms
  at 5000); every peer pays the same, provisr additionally one `GET /status` per poll once the
  processes exist.
- Idle CPU has the resolution of a clock tick (10 ms) per process.
- s6 has no multi-directory `s6-svstat`: its status row is a `sh` loop of 100 calls. s6, runit and
  daemontools restart at most once a second by design (not configurable), so their restart rows
  show that throttle, not their speed. PM2 logs without rotation.
- The log rows measure until the bytes are in the files (page cache), not on disk.
- HTTP and scale rows have no peer (none has that API / was run at 5000).
"""

if __name__ == "__main__":
    main()
