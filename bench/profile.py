#!/usr/bin/python3
"""Profiles provisr on the bench workloads (perf record with the cpu-clock software event, strace).

usage: bench/profile.py --bin DIR --child PATH --out DIR [WHAT...]   (WHAT: start startcpu http cli log idle restart)
Writes OUT/<what>.txt (perf report summaries); run by hand after scripts/bench.sh, see bench/PROFILE.md.
"""
import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


def perf_report(data, out, extra=()):
    with open(out, "w") as f:
        for sort in ("comm,dso", "comm,sym"):
            r = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children", "-g", "none",
                                "--sort", sort, *extra], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            lines = [l for l in r.stdout.splitlines() if l.strip() and not l.startswith("#")]
            f.write(f"== perf report --sort {sort}\n" + "\n".join(l[:220] for l in lines[:60]) + "\n\n")
    bench.log(f"wrote {out}")


def perf_attach(pids, seconds, data):
    return subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", data,
                             "-p", ",".join(map(str, pids)), "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def comps(p):
    with open(f"{p.dir}/run/components.json") as f:
        d = json.load(f)
    return {k: d[k]["pid"] for k in ("keeper", "spawner", "master", "gateway")}


def threads(pids):
    out = []
    for p in pids:
        out += [int(t) for t in os.listdir(f"/proc/{p}/task")]
    return out


def p_start(a):
    """perf over the whole cold start of N: `perf record -- provisr serve` follows every component."""
    p = bench.Provisr(a.n, "sleep")
    p.configure()
    data = os.path.join(a.out, "start.data")
    t0 = time.monotonic()
    p.proc = p.spawn(["perf", "record", "-e", "cpu-clock", "-F", "999", "-g", "-o", data, "--",
                      f"{bench.A.bin}/provisr", "serve", p.cfg])
    bench.wait_until(p.is_running, 300, "running")
    bench.log(f"start of {a.n} under perf: {time.monotonic() - t0:.2f} s")
    ticks = {k: bench.cpu_ticks([v]) / bench.HZ for k, v in comps(p).items()}
    bench.log(f"CPU seconds by component after the start: {ticks}")
    # perf is the root here: SIGTERM the keeper (its child), then let perf write its data.
    os.kill(comps(p)["keeper"], signal.SIGTERM)
    p.proc.wait(timeout=60)
    p.proc = None
    p.teardown()
    perf_report(data, os.path.join(a.out, "start.txt"))
    with open(os.path.join(a.out, "start.txt"), "a") as f:
        f.write(f"CPU seconds by component after the start of {a.n}: {ticks}\n")


def p_startcpu(a):
    """The cold start of N without perf: seconds until all run, then CPU seconds of each component
    (what the start cost each one), then the stop of all."""
    p, secs = bench.started(bench.Provisr, a.n, timeout=600)
    try:
        ticks = {k: bench.cpu_ticks([v]) / bench.HZ for k, v in comps(p).items()}
        t0 = time.monotonic()
        subprocess.run(p.stop_cmd(), env=p.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300)
        stop = bench.wait_until(lambda: bench.count_children() == 0, 300, "children stopped") - t0
        after = {k: bench.cpu_ticks([v]) / bench.HZ for k, v in comps(p).items()}
    finally:
        p.teardown()
    line = (f"start of {a.n}: {secs:.2f} s, CPU s by component {ticks}; stop all: {stop:.2f} s, "
            f"CPU s by component after the stop {after}")
    bench.log(line)
    with open(os.path.join(a.out, "startcpu.txt"), "a") as f:
        f.write(f"{a.bin}: {line}\n")


def p_http(a):
    p, _ = bench.started(bench.Provisr, a.n)
    try:
        c = comps(p)
        lua = os.path.join(p.dir, "s.lua")
        with open(lua, "w") as f:
            f.write(bench.WRK_LUA.replace("%N%", str(a.n)))
        data = os.path.join(a.out, "http.data")
        pr = perf_attach(threads([c["gateway"], c["master"]]), 6, data)
        time.sleep(0.5)
        out = bench.run(["wrk", "-t2", "-c10", "-d5s", "--latency", "-s", lua, f"http://127.0.0.1:{p.port}"])
        pr.wait()
        bench.log(re.search(r"Requests/sec:.*", out).group(0))
        # the syscalls of one request, gateway and master (strace -f -c over 300 sequential requests)
        st = os.path.join(a.out, "http.strace")
        tr = subprocess.Popen(["strace", "-f", "-c", "-o", st] + sum((["-p", str(t)] for t in threads([c["gateway"], c["master"]])), []),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(1)
        import urllib.request
        for i in range(300):
            urllib.request.urlopen(f"{p.url}/status?name=s-{i % a.n + 1}").read()
        tr.send_signal(signal.SIGINT)
        tr.wait(timeout=30)
    finally:
        p.teardown()
    perf_report(data, os.path.join(a.out, "http.txt"))


def p_cli(a):
    p, _ = bench.started(bench.Provisr, 100)
    try:
        data = os.path.join(a.out, "cli.data")
        cmd = " ".join(p.status_cmd())
        subprocess.run(["perf", "record", "-e", "cpu-clock", "-F", "4999", "-g", "-o", data, "--", "sh", "-c",
                        f"for i in $(seq 50); do {cmd} >/dev/null; done"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, check=True)
    finally:
        p.teardown()
    perf_report(data, os.path.join(a.out, "cli.txt"), ("--comm", "provisr"))


def p_log(a):
    inp = bench.make_input()
    stamp = os.path.join(bench.A.work, "plog.stamps")
    p = bench.Provisr(1, "log", {"BCHILD_CAT": inp, "BCHILD_STAMP": stamp})
    p.configure()
    p.launch()
    try:
        bench.wait_until(lambda: os.path.exists(f"{p.dir}/run/components.json"), 30, "components")
        bench.wait_until(lambda: comps(p)["spawner"] is not None, 30, "spawner")
        sp = comps(p)["spawner"]
        data = os.path.join(a.out, "log.data")
        c0 = bench.cpu_ticks([sp])
        pr = perf_attach(threads([sp]), 8, data)
        total = os.path.getsize(inp)
        bench.wait_until(bench.log_done(p.log_files, total), 120, "log bytes")
        bench.log(f"spawner CPU for {a.log_mb} MB: {(bench.cpu_ticks([sp]) - c0) / bench.HZ:.2f} s")
        pr.wait()
        st = os.path.join(a.out, "log.strace")
        # syscall counts for a second pass would need a second child; the perf profile is the record
    finally:
        p.teardown()
    perf_report(data, os.path.join(a.out, "log.txt"))


def p_idle(a):
    p, _ = bench.started(bench.Provisr, 100)
    try:
        time.sleep(2)
        st = os.path.join(a.out, "idle.strace")
        tr = subprocess.Popen(["strace", "-f", "-tt", "-o", st] + sum((["-p", str(t)] for t in threads(comps(p).values())), []),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(10)  # the idle window
        tr.send_signal(signal.SIGINT)
        tr.wait(timeout=30)
        for k, v in comps(p).items():
            with open(f"/proc/{v}/smaps_rollup") as f:
                m = {l.split(":")[0]: l.split()[1] for l in f if ":" in l}
            bench.log(f"{k}: threads {len(os.listdir(f'/proc/{v}/task'))} Pss {m.get('Pss')} Pss_Anon {m.get('Pss_Anon')} Pss_File {m.get('Pss_File')} kB")
    finally:
        p.teardown()


def p_restart(a):
    """Restart latency with and without fsync (libeatmydata): how much of it is the disk."""
    for pre in (None, "/usr/lib/x86_64-linux-gnu/libeatmydata.so"):
        if pre and not os.path.exists(pre):
            continue
        stamp = os.path.join(bench.A.work, "prestart.stamps")
        if os.path.exists(stamp):
            os.unlink(stamp)
        p = bench.Provisr(1, "restart", {"BCHILD_STAMP": stamp, "BCHILD_LIFE_MS": "200"})
        if pre:
            p.env["LD_PRELOAD"] = pre
        p.configure()
        p.launch()
        time.sleep(8)  # the measurement window
        p.teardown()
        ev = sorted((int(t), k) for k, t, _ in (l.split() for l in open(stamp)))
        gaps, pe = [], None
        for t, k in ev:
            if k == "E":
                pe = t
            elif pe is not None:
                gaps.append((t - pe) / 1e6)
                pe = None
        bench.log(f"restart gaps {'without fsync (eatmydata)' if pre else 'as is'}: n={len(gaps)} "
                  f"median {statistics.median(gaps):.2f} ms min {min(gaps):.2f} max {max(gaps):.2f}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--child", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--log-mb", type=int, default=200)
    ap.add_argument("what", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    bench.A = argparse.Namespace(bin=os.path.abspath(a.bin), child=os.path.realpath(a.child), log_mb=a.log_mb,
                                 work=__import__("tempfile").mkdtemp(prefix="provisr-prof-", dir="/tmp"))
    os.chmod(bench.A.work, 0o700)
    bench.OUT = a.out
    try:
        for w in a.what or ["idle", "restart", "cli", "http", "log", "start"]:
            bench.log(f"== profile {w}")
            globals()["p_" + w](a)
    finally:
        bench.kill_pids(bench.child_pids())
        __import__("shutil").rmtree(bench.A.work, ignore_errors=True)


if __name__ == "__main__":
    main()
