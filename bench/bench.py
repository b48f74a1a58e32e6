#!/usr/bin/python3
"""provisr against its peers, side by side in one run (issue 8). Driven by scripts/bench.sh.

usage: bench.py --bin DIR --child PATH --loop PATH --out DIR [--reps N] [--peers a,b] [WORKLOAD...]

Every workload runs provisr and each peer on the same child (bench/child.c, exec'd directly) and
appends its samples to OUT/samples.jsonl; report.py turns them into RESULTS.md. Times are
CLOCK_MONOTONIC; "running" is polled every POLL_S seconds (the poll is part of the measured time
for every peer alike).
"""
import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

POLL_S = 0.005
HZ = os.sysconf("SC_CLK_TCK")
ALL_PEERS = ["provisr", "supervisord", "pm2", "s6", "runit", "daemontools"]
WORKLOADS = ["start", "idle", "status", "restart", "log", "http", "scale"]

A = None  # parsed arguments
OUT = None


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def record(workload, peer, metric, value, **extra):
    row = {"workload": workload, "peer": peer, "metric": metric, "value": value}
    row.update(extra)
    with open(os.path.join(OUT, "samples.jsonl"), "a") as f:
        f.write(json.dumps(row) + "\n")
    log(f"{workload:8} {peer:12} {metric:22} {value}")


# ---------------------------------------------------------------- /proc helpers
def proc_table():
    """pid -> (ppid, exe or None) for every live process (zombies have no exe)."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                st = f.read()
            ppid = int(st[st.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            continue
        try:
            exe = os.readlink(f"/proc/{d}/exe")
        except OSError:
            exe = None
        out[int(d)] = (ppid, exe)
    return out


def count_children():
    """Live processes running the benchmark child (our own binary: nobody else runs it)."""
    n = 0
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe") == A.child:
                    n += 1
            except OSError:
                pass
    return n


def child_pids():
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink(f"/proc/{d}/exe") == A.child:
                    out.append(int(d))
            except OSError:
                pass
    return out


def descendants(roots):
    table = proc_table()
    kids = {}
    for pid, (ppid, _) in table.items():
        kids.setdefault(ppid, []).append(pid)
    seen, todo = set(), [r for r in roots if r in table]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        todo.extend(kids.get(p, []))
    return {p: table[p] for p in seen}


def supervisor_pids(roots):
    """The supervisor's own processes: the roots and their descendants, minus the managed children."""
    return sorted(p for p, (_, exe) in descendants(roots).items() if exe != A.child)


def cpu_ticks(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/stat") as f:
                st = f.read()
            fields = st[st.rindex(")") + 2:].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except OSError:
            pass
    return total


def pss_kib(pids):
    total = 0
    for p in pids:
        try:
            with open(f"/proc/{p}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1])
                        break
        except OSError:
            pass
    return total


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return time.monotonic()
        time.sleep(POLL_S)  # polling step of the measurement
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


def kill_pids(pids, sig=signal.SIGKILL):
    for p in pids:
        try:
            os.kill(p, sig)
        except OSError:
            pass


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, env=None, timeout=120, check=True):
    r = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout.decode()[-400:]}")
    return r.stdout.decode()


# ---------------------------------------------------------------- peers
class Peer:
    """One supervisor run: configure N children (mode: sleep | restart | log), start, stop, tear down."""

    name = "?"

    def __init__(self, n, mode="sleep", env=None):
        self.n, self.mode, self.cenv = n, mode, dict(env or {})
        self.dir = tempfile.mkdtemp(prefix=f"{self.name}-", dir=A.work)
        os.chmod(self.dir, 0o700)
        self.proc = None
        self.env = dict(os.environ)
        self.env.update(self.cenv)
        self.logf = open(os.path.join(self.dir, "supervisor.out"), "wb")

    # -- to implement
    def configure(self): ...
    def launch(self): ...
    def roots(self): return [self.proc.pid] if self.proc else []
    def stop_cmd(self): ...
    def status_cmd(self): ...
    def log_files(self): return []
    def graceful(self): ...

    def is_running(self):
        return count_children() >= self.n

    def spawn(self, cmd, **kw):
        return subprocess.Popen(cmd, env=self.env, stdout=self.logf, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir, **kw)

    def teardown(self):
        try:
            self.graceful()
        except Exception as e:  # noqa: BLE001 - a failed graceful stop falls through to SIGKILL
            log(f"{self.name}: graceful stop failed: {e}")
        roots = self.roots()
        kill_pids(list(descendants(roots)))
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            self.proc.wait(timeout=10)
        kill_pids(child_pids())
        try:
            wait_until(lambda: count_children() == 0, 20, "children gone after teardown")
        except TimeoutError as e:
            log(str(e))
        self.logf.close()
        if self.mode == "log":
            shutil.rmtree(self.dir, ignore_errors=True)
        # else: removed with the whole work dir at the end, so the next supervisor does not create
        # its files while ext4 is still busy with thousands of just-deleted ones


class Provisr(Peer):
    name = "provisr"

    def configure(self):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/api"
        os.makedirs(f"{self.dir}/programs")
        env = [f'"{k}={v}"' for k, v in self.cenv.items()]
        lines = [
            "use_os_env = false",
            f'programs_directory = "{self.dir}/programs"',
            "[log]",
            f'dir = "{self.dir}/logs"',
            "max_size_mb = 16", "max_backups = 50",
            "[server]",
            f'listen = "127.0.0.1:{self.port}"',
            "[daemon]",
            f'run_dir = "{self.dir}/run"',
            "[[processes]]",
            'type = "process"',
            "[processes.spec]",
            'name = "s"',
            f'args = ["{A.child}"]',
            f"instances = {self.n}",
            f"env = [{', '.join(env)}]",
            'start_duration = "0"',
            'stop_timeout = "10s"',
        ]
        if self.mode == "restart":
            lines += ["auto_restart = true", 'restart_interval = "0"']
        self.cfg = f"{self.dir}/provisr.toml"
        with open(self.cfg, "w") as f:
            f.write("\n".join(lines) + "\n")

    def launch(self):
        self.proc = self.spawn([f"{A.bin}/provisr", "serve", self.cfg])

    def status(self, query=""):
        with urllib.request.urlopen(f"{self.url}/status{query}", timeout=10) as r:
            return json.loads(r.read())

    def is_running(self):
        if count_children() < self.n:
            return False
        try:
            st = self.status("?wildcard=*")
        except OSError:
            return False
        return len(st) == self.n and all(s["state"] == "running" for s in st)

    def wait_api(self):
        def up():
            try:
                return self.status() == {"ok": True}
            except OSError:
                return False
        wait_until(up, 30, "provisr gateway")

    def stop_cmd(self):
        return [f"{A.bin}/provisr", "stop", "--api-url", self.url]

    def status_cmd(self):
        return [f"{A.bin}/provisr", "status", "--api-url", self.url]

    def log_files(self):
        return glob.glob(f"{self.dir}/logs/s.stdout*")

    def component_pid(self, name):
        with open(f"{self.dir}/run/components.json") as f:
            return json.load(f)[name]["pid"]

    def graceful(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                log("provisr: keeper still running 30 s after SIGTERM")


class Supervisord(Peer):
    name = "supervisord"

    def configure(self):
        d = self.dir
        env = ",".join(f'{k}="{v}"' for k, v in self.cenv.items())
        log_lines = ["stdout_logfile_maxbytes=16MB", "stdout_logfile_backups=50"]
        if self.mode == "log":
            log_lines.insert(0, f"stdout_logfile={d}/logs/s.out")
            os.makedirs(f"{d}/logs")
        conf = f"""[supervisord]
nodaemon=true
logfile={d}/supervisord.log
pidfile={d}/supervisord.pid
childlogdir={d}
minfds=8192
minprocs=20000
[unix_http_server]
file={d}/supervisor.sock
[supervisorctl]
serverurl=unix://{d}/supervisor.sock
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[program:s]
command={A.child}
process_name=%(program_name)s_%(process_num)d
numprocs={self.n}
startsecs=0
startretries=1000000
autorestart={'true' if self.mode == 'restart' else 'false'}
stopwaitsecs=10
{'environment=' + env if env else ''}
""" + "\n".join(log_lines) + "\n"
        self.cfg = f"{d}/supervisord.conf"
        with open(self.cfg, "w") as f:
            f.write(conf)

    def launch(self):
        self.proc = self.spawn(["supervisord", "-n", "-c", self.cfg])

    def stop_cmd(self):
        return ["supervisorctl", "-c", self.cfg, "stop", "all"]

    def status_cmd(self):
        return ["supervisorctl", "-c", self.cfg, "status"]

    def log_files(self):
        return glob.glob(f"{self.dir}/logs/s.out*")

    def graceful(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass


class PM2(Peer):
    name = "pm2"

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.env["PM2_HOME"] = f"{self.dir}/pm2home"
        self.pm2 = A.pm2

    def configure(self):
        os.makedirs(f"{self.dir}/logs")
        apps = []
        for i in range(self.n):
            app = {"name": f"s{i}", "script": A.child, "interpreter": "none", "exec_mode": "fork",
                   "autorestart": self.mode == "restart", "max_restarts": 1000000, "min_uptime": 0,
                   "restart_delay": 0, "env": self.cenv, "merge_logs": True,
                   "out_file": f"{self.dir}/logs/s{i}.out", "error_file": f"{self.dir}/logs/s{i}.err"}
            apps.append(app)
        self.cfg = f"{self.dir}/ecosystem.config.js"
        with open(self.cfg, "w") as f:
            f.write("module.exports = " + json.dumps({"apps": apps}) + ";\n")

    def launch(self):
        # `pm2 start` forks the PM2 daemon, then returns; the daemon starts the apps.
        self.starter = self.spawn([self.pm2, "start", self.cfg])

    def roots(self):
        try:
            with open(f"{self.dir}/pm2home/pm2.pid") as f:
                return [int(f.read().strip())]
        except (OSError, ValueError):
            return []

    def stop_cmd(self):
        return [self.pm2, "stop", "all"]

    def status_cmd(self):
        return [self.pm2, "jlist"]

    def log_files(self):
        return glob.glob(f"{self.dir}/logs/s0.out*")

    def graceful(self):
        run([self.pm2, "kill"], env=self.env, timeout=60, check=False)
        if getattr(self, "starter", None):
            self.starter.wait(timeout=30)


class ScanDir(Peer):
    """s6, runit and daemontools: one service directory per child, `run` a symlink to the child."""

    scanner, logger = None, None

    def configure(self):
        self.scan = f"{self.dir}/scan"
        os.makedirs(self.scan)
        envdir = None
        if self.cenv:  # the child reads its mode from the environment: a tiny wrapper sets it
            envdir = f"{self.dir}/run.sh"
            with open(envdir, "w") as f:
                f.write("#!/bin/sh\n" + "".join(f"export {k}='{v}'\n" for k, v in self.cenv.items())
                        + f"exec {A.child}\n")
            os.chmod(envdir, 0o755)
        for i in range(self.n):
            sd = f"{self.scan}/s{i}"
            os.makedirs(sd)
            os.symlink(envdir or A.child, f"{sd}/run")
            if self.mode == "log":
                os.makedirs(f"{sd}/log")
                os.makedirs(f"{self.dir}/logs")
                with open(f"{sd}/log/run", "w") as f:
                    f.write("#!/bin/sh\nexec " + self.logger.format(d=f"{self.dir}/logs") + "\n")
                os.chmod(f"{sd}/log/run", 0o755)
        self.dirs = [f"{self.scan}/s{i}" for i in range(self.n)]

    def launch(self):
        self.proc = self.spawn(self.scanner + [self.scan])

    def log_files(self):
        return [p for p in glob.glob(f"{self.dir}/logs/*") if re.search(r"/(current|@[^/]*)$", p)]

    def graceful(self):
        pass


class S6(ScanDir):
    name = "s6"
    scanner = ["s6-svscan"]
    logger = "s6-log n50 s16777215 {d}"

    def stop_cmd(self):
        # s6-svc takes one directory: write its command byte to each control fifo, as s6-svc does
        return ["sh", "-c", f'for d in {self.scan}/*; do printf d > "$d/supervise/control"; done']

    def status_cmd(self):
        return ["sh", "-c", f'for d in {self.scan}/*; do s6-svstat "$d"; done']


class Runit(ScanDir):
    name = "runit"
    scanner = ["runsvdir", "-P"]
    logger = "svlogd {d}"

    def configure(self):
        super().configure()
        if self.mode == "log":
            with open(f"{self.dir}/logs/config", "w") as f:
                f.write("s16777215\nn50\n")

    def stop_cmd(self):
        return ["sv", "down"] + self.dirs

    def status_cmd(self):
        return ["sv", "status"] + self.dirs


class Daemontools(ScanDir):
    name = "daemontools"
    scanner = ["svscan"]
    logger = "multilog s16777215 n50 {d}"

    def stop_cmd(self):
        return ["svc", "-d"] + self.dirs

    def status_cmd(self):
        return ["svstat"] + self.dirs


PEERS = {"provisr": Provisr, "supervisord": Supervisord, "pm2": PM2, "s6": S6, "runit": Runit,
         "daemontools": Daemontools}


def peers():
    return [p for p in ALL_PEERS if p in A.peers]


def started(cls, n, mode="sleep", env=None, timeout=120):
    """Configure and launch; returns (peer, seconds from launch until all n children run)."""
    p = cls(n, mode, env)
    p.configure()
    t0 = time.monotonic()
    p.launch()
    try:
        t1 = wait_until(p.is_running, timeout, f"{p.name}: {n} children running")
    except BaseException:
        p.teardown()
        raise
    return p, t1 - t0


def bare_loop(n):
    t0 = time.monotonic()
    pr = subprocess.Popen([A.loop, str(n), A.child], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = pr.stdout.readline()
    t1 = time.monotonic()
    ok = line.startswith("ready") and count_children() >= n
    pr.stdin.write("\n")
    pr.stdin.close()
    pr.wait(timeout=60)
    wait_until(lambda: count_children() == 0, 20, "bare loop children gone")
    if not ok:
        raise RuntimeError(f"bare loop: {line!r}")
    return t1 - t0


# ---------------------------------------------------------------- workloads
def w_start():
    n = A.n_start
    for rep in range(A.reps):
        record("start", "bare", "seconds", bare_loop(n), rep=rep, n=n)
        for name in peers():
            try:
                p, secs = started(PEERS[name], n)
            except Exception as e:  # noqa: BLE001 - a failing peer is reported, the run goes on
                record("start", name, "error", str(e), rep=rep)
                continue
            record("start", name, "seconds", secs, rep=rep, n=n)
            record("start", name, "cpu_seconds", cpu_ticks(supervisor_pids(p.roots())) / HZ, rep=rep, n=n)
            try:
                t0 = time.monotonic()
                r = subprocess.run(p.stop_cmd(), env=p.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, timeout=120)
                t1 = wait_until(lambda: count_children() == 0, 120, f"{name}: children stopped")
                record("stop", name, "seconds", t1 - t0, rep=rep, n=n, rc=r.returncode)
            except Exception as e:  # noqa: BLE001
                record("stop", name, "error", str(e), rep=rep)
            finally:
                p.teardown()


def w_idle():
    n = A.n_idle
    for name in peers():
        try:
            p, _ = started(PEERS[name], n)
        except Exception as e:  # noqa: BLE001
            record("idle", name, "error", str(e))
            continue
        try:
            time.sleep(2)  # settle: start-up work (pid files, journal timers) is not idle time
            roots = p.roots()
            for rep in range(A.idle_windows):
                pids = supervisor_pids(roots)
                c0 = cpu_ticks(pids)
                time.sleep(A.idle_s)  # the measurement window
                pids2 = supervisor_pids(roots)
                c1 = cpu_ticks(pids2)
                if set(pids2) != set(pids):
                    log(f"{name}: supervisor processes changed during the idle window")
                record("idle", name, "cpu_seconds", (c1 - c0) / HZ, rep=rep, n=n, procs=len(pids2),
                       window_s=A.idle_s)
                record("pss", name, "pss_mib", pss_kib(pids2) / 1024, rep=rep, n=n, procs=len(pids2))
        finally:
            p.teardown()


def w_status():
    n = A.n_idle
    for name in peers():
        try:
            p, _ = started(PEERS[name], n)
        except Exception as e:  # noqa: BLE001
            record("status", name, "error", str(e))
            continue
        try:
            cmd = p.status_cmd()
            js = f"{p.dir}/hyperfine.json"
            env = dict(p.env)
            subprocess.run(["hyperfine", "-N", "--warmup", "3", "--runs", str(A.status_runs), "-i",
                            "--export-json", js, " ".join(map(shell_quote, cmd))],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=300,
                           check=True)
            with open(js) as f:
                res = json.load(f)["results"][0]
            out = subprocess.run(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT).stdout
            record("status", name, "cpu_ms", (res["user"] + res["system"]) * 1000, n=n)
            for i, t in enumerate(res["times"]):
                record("status", name, "seconds", t, rep=i, n=n, cmd=" ".join(cmd[:3]) + (" ..." if len(cmd) > 3 else ""),
                       out_bytes=len(out))
        except Exception as e:  # noqa: BLE001
            record("status", name, "error", str(e))
        finally:
            p.teardown()


def shell_quote(s):
    return s if re.fullmatch(r"[A-Za-z0-9_./=:-]+", s) else "'" + s.replace("'", "'\\''") + "'"


def w_restart():
    for name in peers():
        stamp = os.path.join(A.work, f"restart-{name}.stamps")
        try:
            os.unlink(stamp)
        except OSError:
            pass
        env = {"BCHILD_STAMP": stamp, "BCHILD_LIFE_MS": "200"}
        try:
            p, _ = started(PEERS[name], 1, "restart", env)
        except Exception as e:  # noqa: BLE001
            record("restart", name, "error", str(e))
            continue
        try:
            time.sleep(A.restart_s)  # the measurement window: as many restarts as the peer makes
        finally:
            p.teardown()
        gaps, last_exit = [], {}
        events = []
        with open(stamp) as f:
            for line in f:
                parts = line.split()
                if len(parts) == 3:
                    events.append((int(parts[1]), parts[0]))
        events.sort()
        prev_e = None
        for t, kind in events:
            if kind == "E":
                prev_e = t
            elif kind == "S" and prev_e is not None:
                gaps.append((t - prev_e) / 1e6)
                prev_e = None
        for i, g in enumerate(gaps):
            record("restart", name, "ms", g, rep=i)
        if not gaps:
            record("restart", name, "error", f"no restart in {A.restart_s} s")


def make_input():
    path = os.path.join(A.work, "input.log")
    lines = A.log_mb * 10000
    if not os.path.exists(path) or os.path.getsize(path) != lines * 100:
        body = ("x" * 91 + "\n")
        with open(path, "w") as f:
            chunk = []
            for i in range(lines):
                chunk.append(f"{i:08d} {body}")
                if len(chunk) == 10000:
                    f.write("".join(chunk))
                    chunk = []
            f.write("".join(chunk))
    with open(path, "rb") as f:  # warm the page cache
        while f.read(1 << 20):
            pass
    return path


def start_stamp(stamp):
    with open(stamp) as f:
        for line in f:
            if line.startswith("S "):
                return int(line.split()[1]) / 1e9
    return None


def log_done(files_fn, total):
    def pred():
        s = 0
        for p in files_fn():
            try:
                s += os.path.getsize(p)
            except OSError:
                pass
        return s >= total
    return pred


def w_log():
    inp = make_input()
    total = os.path.getsize(inp)
    for rep in range(A.reps):
        # the reference: the same child writing into `cat > file` through a pipe
        stamp = os.path.join(A.work, "log-ref.stamps")
        out = os.path.join(A.work, "log-ref.out")
        for f in (stamp, out):
            if os.path.exists(f):
                os.unlink(f)
        env = dict(os.environ, BCHILD_CAT=inp, BCHILD_STAMP=stamp)
        pr = subprocess.Popen(["sh", "-c", f'"{A.child}" | cat > "{out}"'], env=env, start_new_session=True)
        t1 = wait_until(log_done(lambda: [out], total), 120, "cat relay")
        record("log", "cat-relay", "seconds", t1 - start_stamp(stamp), rep=rep, mb=A.log_mb)
        os.killpg(pr.pid, signal.SIGKILL)
        pr.wait()
        os.unlink(out)
        for name in peers():
            stamp = os.path.join(A.work, f"log-{name}.stamps")
            if os.path.exists(stamp):
                os.unlink(stamp)
            try:
                p, _ = started(PEERS[name], 1, "log", {"BCHILD_CAT": inp, "BCHILD_STAMP": stamp})
            except Exception as e:  # noqa: BLE001
                record("log", name, "error", str(e), rep=rep)
                continue
            try:
                t1 = wait_until(log_done(p.log_files, total), 120, f"{name}: log bytes")
                record("log", name, "seconds", t1 - start_stamp(stamp), rep=rep, mb=A.log_mb,
                       files=len(p.log_files()))
            except Exception as e:  # noqa: BLE001
                record("log", name, "error", str(e), rep=rep)
            finally:
                p.teardown()


WRK_LUA = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", "/api/status?name=s-" .. ((counter % %N%) + 1))
end
"""


def w_http():
    if "provisr" not in A.peers:
        return
    n = A.n_start
    p, _ = started(Provisr, n)
    try:
        lua = os.path.join(p.dir, "status.lua")
        with open(lua, "w") as f:
            f.write(WRK_LUA.replace("%N%", str(n)))
        sup = supervisor_pids(p.roots())
        for rep in range(A.reps):
            c0 = cpu_ticks(sup)
            out = run(["wrk", "-t2", "-c10", f"-d{A.http_s}s", "--latency", "-s", lua,
                       f"http://127.0.0.1:{p.port}"], timeout=A.http_s + 60)
            rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
            lat = {m.group(1): wrk_ms(m.group(2)) for m in re.finditer(r"^\s+(50|75|90|99)%\s+(\S+)", out, re.M)}
            errs = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            record("http", "provisr", "req_per_s", rps, rep=rep, n=n, p50_ms=lat.get("50"),
                   p99_ms=lat.get("99"), non2xx=int(errs.group(1)) if errs else 0)
            record("http", "provisr", "p99_ms", lat.get("99"), rep=rep, n=n)
            reqs = int(re.search(r"(\d+) requests in", out).group(1))
            record("http", "provisr", "cpu_us_per_req", (cpu_ticks(sup) - c0) / HZ * 1e6 / max(reqs, 1), rep=rep, n=n)
    finally:
        p.teardown()


def wrk_ms(s):
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", s)
    v = float(m.group(1))
    return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v


def w_scale():
    if "provisr" not in A.peers:
        return
    slow = None  # bounded runtime: once a start took longer than the budget, larger sizes are not run
    for n in A.scale:
        if slow is not None:
            record("scale", "provisr", "error", f"not run: the start of {slow[0]} took {slow[1]:.1f} s "
                   f"(budget {A.scale_budget_s:.0f} s per size)", n=n)
            continue
        record("scale", "bare", "start_s", bare_loop(n), n=n)
        try:
            p, secs = started(Provisr, n, timeout=A.scale_budget_s * 2)
        except Exception as e:  # noqa: BLE001
            record("scale", "provisr", "error", str(e), n=n)
            slow = (n, A.scale_budget_s * 2)
            continue
        if secs > A.scale_budget_s:
            slow = (n, secs)
        try:
            record("scale", "provisr", "start_s", secs, n=n)
            time.sleep(1)  # settle before measuring memory
            lat = []
            for _ in range(A.scale_status_runs):
                t0 = time.monotonic()
                st = p.status("?wildcard=*")
                lat.append(time.monotonic() - t0)
                assert len(st) == n
            record("scale", "provisr", "status_http_s", statistics.median(lat), n=n, min=min(lat), max=max(lat))
            cli = []
            for _ in range(A.scale_status_runs):
                t0 = time.monotonic()
                subprocess.run(p.status_cmd(), stdout=subprocess.DEVNULL, check=True)
                cli.append(time.monotonic() - t0)
            record("scale", "provisr", "status_cli_s", statistics.median(cli), n=n, min=min(cli), max=max(cli))
            mpid = p.component_pid("master")
            rss = rss_kib(mpid)
            record("scale", "provisr", "master_rss_kib", rss, n=n)
            record("scale", "provisr", "master_rss_per_inst_kib", rss / n, n=n)
            for comp in ("keeper", "spawner", "gateway"):
                record("scale", "provisr", f"{comp}_rss_kib", rss_kib(p.component_pid(comp)), n=n)
        finally:
            p.teardown()


def main():
    global A, OUT
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--child", required=True)
    ap.add_argument("--loop", required=True)
    ap.add_argument("--pm2", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--peers", default=",".join(ALL_PEERS))
    ap.add_argument("--n-start", type=int, default=500)
    ap.add_argument("--n-idle", type=int, default=100)
    ap.add_argument("--idle-s", type=float, default=10)
    ap.add_argument("--idle-windows", type=int, default=2)
    ap.add_argument("--status-runs", type=int, default=30)
    ap.add_argument("--restart-s", type=float, default=8)
    ap.add_argument("--log-mb", type=int, default=200)
    ap.add_argument("--http-s", type=int, default=5)
    ap.add_argument("--scale", default="100,500,1000,2000,5000")
    ap.add_argument("--scale-status-runs", type=int, default=5)
    ap.add_argument("--scale-budget-s", type=float, default=60)
    ap.add_argument("workloads", nargs="*")
    A = ap.parse_args()
    A.peers = A.peers.split(",")
    A.scale = [int(x) for x in A.scale.split(",")]
    A.child = os.path.realpath(A.child)
    A.pm2 = os.path.abspath(A.pm2)
    A.bin = os.path.abspath(A.bin)
    OUT = A.out
    os.makedirs(OUT, exist_ok=True)
    todo = A.workloads or WORKLOADS
    for w in todo:
        if w not in WORKLOADS:
            sys.exit(f"unknown workload {w} (one of {', '.join(WORKLOADS)})")
    if count_children():
        sys.exit("benchmark children from an earlier run are still alive; end them first")
    A.work = tempfile.mkdtemp(prefix="provisr-bench-", dir="/tmp")
    os.chmod(A.work, 0o700)
    try:
        for w in todo:
            log(f"== {w}")
            with open("/proc/loadavg") as f:
                record(w, "machine", "loadavg", float(f.read().split()[0]))
            t0 = time.monotonic()
            globals()["w_" + w]()
            log(f"== {w} took {time.monotonic() - t0:.0f} s")
    finally:
        kill_pids(child_pids())
        shutil.rmtree(A.work, ignore_errors=True)


if __name__ == "__main__":
    main()
