#!/usr/bin/env python3
"""Writes the text seed corpora of fuzz/corpus/ from the examples, the compatibility configs and
the raw-string configs of the tests. The MessagePack seeds (proto, api_request) come from the
fuzz_seed_writer binary (scripts/fuzz.sh --seeds). Run from the repository root."""
import hashlib
import os
import re
import sys

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "fuzz", "corpus")
SHARED = os.path.join(ROOT, "..", "shared", "compat", "go-provisr")


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    if not data or len(data) > 8192:
        return
    d = os.path.join(OUT, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def fmt_of(path):
    ext = path.rsplit(".", 1)[-1]
    return {"toml": "toml", "yaml": "yaml", "yml": "yaml", "json": "json"}.get(ext)


# Config files of the examples and of the Go compatibility set.
for base in (os.path.join(ROOT, "examples"), SHARED):
    for dirpath, _, files in os.walk(base):
        for f in files:
            fmt = fmt_of(f)
            if fmt:
                with open(os.path.join(dirpath, f), "rb") as fh:
                    put("config_" + fmt, fh.read())

# Raw-string configs in the config tests: R"(...)" whose text looks like one format.
raw = re.compile(r'R"\((.*?)\)"', re.S)
for dirpath, _, files in os.walk(os.path.join(ROOT, "tests")):
    for f in files:
        if not f.endswith((".cpp", ".hpp")):
            continue
        text = open(os.path.join(dirpath, f), encoding="utf-8", errors="replace").read()
        for m in raw.finditer(text):
            s = m.group(1)
            st = s.lstrip()
            if st.startswith("{"):
                put("config_json", s)
            elif re.search(r"^\s*\[|^\w+\s*=", s, re.M) and "=" in s:
                put("config_toml", s)
            elif re.search(r"^\s*[\w-]+:\s", s, re.M):
                put("config_yaml", s)

# dotenv, commands, durations, expansions.
for s in ["A=1\nB=two\n", "export PATH=/usr/bin\n# comment\nQ=\"quoted \\\"x\\\"\\n\"\nS='single'\n",
          "K=v # inline comment\n\n  X = spaced  \n", "BAD LINE\n", "U=\"unterminated\n"]:
    put("dotenv", s)
for s in ["/usr/bin/python3 -m http.server 8080", "sh -c 'echo hi; sleep 1' argv0 a b",
          "FOO=bar /bin/prog --flag", "echo \"a b\" 'c d' e\\ f", "prog | tee out.log",
          "bash -c \"exec $HOME/run\"", "1m30s", "500ms", "2h", "1.5s", "10us", "\u00b5s", "0"]:
    put("command", s)
for s in ["HOME=/root\nX=1\n\0${HOME}/bin:${X}", "A=${B}\nB=x\n\0$${A} ${A} ${missing}", "\0${unclosed",
          "N=v\n\0plain text"]:
    put("expand", s)

# HTTP requests for the translation target: the routes of docs/http-api.md.
reqs = [
    "GET /status", "GET /status?name=web-1", "GET /status?base=web", "GET /status?wildcard=web-*",
    "POST /start?name=web&wait=5s", "POST /stop?base=web&wait_ms=1000&dry_run=1",
    "POST /restart?wildcard=w*&dry_run=true", "POST /scale?name=web&instances=3",
    'POST /register\n{"name":"api","command":"/bin/sleep 100","instances":2,"env":["A=1"],"autorestart":true}',
    'POST /update?wait=1s\n{"name":"api","command":"/bin/true"}', "POST /unregister?name=api",
    "GET /groups", "GET /group/status?group=backend", "POST /group/start?group=backend&wait=2s",
    "POST /group/stop?group=backend", "GET /debug/processes", "GET /processes/web-1/logs?since=0&limit=10",
    "GET /processes/web/logs?stream=stderr&follow=1", "GET /processes/web/spec", "GET /settings/status",
    "POST /reload?dry_run=1", "POST /reopen-logs", "POST /shutdown", "GET /events?topic=state",
    "GET /health", "GET /version", "GET /metrics", "POST /start?name=..%2Fetc", "POST /start?name=a&name=b",
]
for r in reqs:
    put("translate", r)
print("text seeds written under", OUT)
