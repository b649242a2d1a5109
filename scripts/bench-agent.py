#!/usr/bin/env python3
"""Agent benchmark: 10,000 enrolled nodes, 1000 of them on live simulated BMCs.

Measures, in one run:
  * the duration of a full power sync sweep over the 1000 live nodes (the
    other 9000 are in maintenance, as enrolled-but-unmanaged nodes would be),
    read from the agent's own ironrack_sync_sweep_seconds histogram;
  * GET /v1/nodes?fields=uuid,power_state latency, p50 / p99 (one page of
    max_limit = 1000 nodes, as Ironic pages);
  * the agent's RSS (VmRSS and peak VmHWM);
  * the peer: what Ironic's ipmitool driver does for the same sweep, one
    `ipmitool power status` process per node with Ironic's default 8 sync
    workers, timed on a sample and scaled to the live fleet.

Not a test: it asserts nothing about time. Run through scripts/bench-agent.sh.
"""

import argparse
import concurrent.futures
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

API_VERSION = "1.29"


def log(msg):
    print(f"[bench-agent] {msg}", file=sys.stderr, flush=True)


class Api:
    """One keep-alive connection per thread."""

    def __init__(self, port):
        self.port = port
        self.local = threading.local()

    def conn(self):
        c = getattr(self.local, "c", None)
        if c is None:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            self.local.c = c
        return c

    def call(self, method, path, body=None):
        hdrs = {"X-OpenStack-Ironic-API-Version": API_VERSION, "Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        for attempt in range(2):
            c = self.conn()
            try:
                c.request(method, path, body=data, headers=hdrs)
                r = c.getresponse()
                raw = r.read()
                return r.status, raw
            except (http.client.HTTPException, OSError):
                self.local.c = None
                if attempt:
                    raise
        raise RuntimeError("unreachable")


def start_agent(binary, cfg_path, log_path):
    logf = open(log_path, "ab")
    p = subprocess.Popen([binary, "serve", "--config", cfg_path],
                         stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
    deadline = time.time() + 60
    pat = re.compile(r"listening on http://([0-9.]+):(\d+)")
    while time.time() < deadline:
        if p.poll() is not None:
            raise SystemExit(f"agent exited early:\n{open(log_path).read()[-4000:]}")
        with open(log_path, errors="replace") as f:
            m = pat.search(f.read())
        if m:
            return p, int(m.group(2))
        time.sleep(0.05)
    raise SystemExit("agent did not start listening")


def stop(p):
    if p and p.poll() is None:
        p.send_signal(signal.SIGTERM)
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def rss_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0])
    return out


def metric(api, name):
    st, raw = api.call("GET", "/metrics")
    if st != 200:
        raise SystemExit(f"/metrics answered {st}")
    total = 0.0
    found = False
    for line in raw.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


def percentile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def list_latency(api, n):
    lat = []
    count = None
    for _ in range(n):
        t = time.perf_counter()
        st, raw = api.call("GET", "/v1/nodes?fields=uuid,power_state")
        lat.append(time.perf_counter() - t)
        if st != 200:
            raise SystemExit(f"list answered {st}: {raw[:300]!r}")
        count = len(json.loads(raw)["nodes"])
    return percentile(lat, 0.5), percentile(lat, 0.99), count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--total", type=int, default=10000)
    ap.add_argument("--live", type=int, default=1000)
    ap.add_argument("--sim-port", type=int, default=24000)
    ap.add_argument("--sweeps", type=int, default=3)
    ap.add_argument("--list-requests", type=int, default=300)
    ap.add_argument("--peer-sample", type=int, default=64)
    ap.add_argument("--out", help="write the results as JSON here")
    a = ap.parse_args()

    work = tempfile.mkdtemp(prefix="ironrack-bench-agent-")
    sim = agent = None
    try:
        pw = os.path.join(work, "pw")
        secret = f"bench-{time.time_ns() % 10**12}"
        with open(pw, "w") as f:
            f.write(secret)
        os.chmod(pw, 0o600)
        sim = subprocess.Popen(
            [a.bin, "sim", "--ipmi", f"127.0.0.1:{a.sim_port}", "--count", str(a.live),
             "--password-file", pw],
            stdout=subprocess.DEVNULL, stderr=open(os.path.join(work, "sim.log"), "wb"))
        time.sleep(0.5)

        def config(interval):
            path = os.path.join(work, f"agent-{interval}.toml")
            with open(path, "w") as f:
                f.write(f"""
[api]
listen = "127.0.0.1:0"
[store]
path = "{work}/ironrack.db"
[conductor]
sync_power_state_interval = {interval}
power_failure_recovery_interval = 0
bmc_timeout = 2
""")
            return path

        # Phase 1: enroll with the sync loop off.
        agent, port = start_agent(a.bin, config(0), os.path.join(work, "agent-enroll.log"))
        api = Api(port)
        log(f"agent on :{port}; enrolling {a.total} nodes ({a.live} live)")
        t0 = time.perf_counter()

        def enroll(i):
            live = i < a.live
            body = {
                "name": f"bench-{i:05d}",
                "driver": "ipmi",
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": a.sim_port + i if live else 9,
                    "ipmi_username": "admin",
                    "ipmi_password": secret,
                    "ipmi_cipher_suite": 17,
                },
            }
            st, raw = api.call("POST", "/v1/nodes", body)
            if st != 201:
                raise SystemExit(f"create answered {st}: {raw[:300]!r}")
            if not live:
                uuid = json.loads(raw)["uuid"]
                st, raw = api.call("PUT", f"/v1/nodes/{uuid}/maintenance",
                                   {"reason": "benchmark: enrolled, not managed"})
                if st != 202:
                    raise SystemExit(f"maintenance answered {st}: {raw[:300]!r}")

        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            list(ex.map(enroll, range(a.total)))
        enroll_s = time.perf_counter() - t0
        log(f"enrolled in {enroll_s:.1f} s")
        stop(agent)

        # Phase 2: the sync loop on; wait for the sweeps, then measure.
        agent, port = start_agent(a.bin, config(2), os.path.join(work, "agent-sync.log"))
        api = Api(port)
        name = "ironrack_sync_sweep_seconds"
        deadline = time.time() + 120
        sweeps = []
        last_count, last_sum = 0.0, 0.0
        while len(sweeps) < a.sweeps and time.time() < deadline:
            c = metric(api, name + "_count") or 0.0
            s = metric(api, name + "_sum") or 0.0
            if c > last_count:
                sweeps.append((s - last_sum) / (c - last_count))
                last_count, last_sum = c, s
            time.sleep(0.2)
        if not sweeps:
            raise SystemExit("no sync sweep was recorded")
        st, raw = api.call("GET", "/v1/nodes?fields=uuid,power_state&maintenance=false&limit=1000")
        states = [n["power_state"] for n in json.loads(raw)["nodes"]]
        synced = sum(1 for s in states if s in ("power on", "power off"))
        p50, p99, page = list_latency(api, a.list_requests)
        mem = rss_kib(agent.pid)

        # The peer: one ipmitool process per node, 8 at a time (Ironic's
        # default sync_power_state_workers), on a sample.
        ipmitool = shutil.which("ipmitool") or "/usr/bin/ipmitool"
        sample = min(a.peer_sample, a.live)

        def one(i):
            r = subprocess.run([ipmitool, "-I", "lanplus", "-H", "127.0.0.1", "-p",
                                str(a.sim_port + i), "-U", "admin", "-f", pw, "-C", "17",
                                "power", "status"], capture_output=True, timeout=60)
            return r.returncode == 0

        t0 = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            ok = sum(ex.map(one, range(sample)))
        peer_s = (time.perf_counter() - t0) * a.live / sample
        if ok != sample:
            log(f"warning: ipmitool failed on {sample - ok} of {sample} BMCs")

        cold, warm = sweeps[0], min(sweeps[1:] or sweeps)
        res = {
            "nodes_total": a.total,
            "nodes_live": a.live,
            "nodes_synced": synced,
            "enroll_seconds": round(enroll_s, 2),
            "sweep_seconds": [round(x, 4) for x in sweeps],
            "sweep_cold_seconds": round(cold, 4),
            "sweep_warm_seconds": round(warm, 4),
            "list_page_nodes": page,
            "list_p50_ms": round(p50 * 1000, 2),
            "list_p99_ms": round(p99 * 1000, 2),
            "rss_mib": round(mem.get("VmRSS", 0) / 1024, 1),
            "rss_peak_mib": round(mem.get("VmHWM", 0) / 1024, 1),
            "peer_ipmitool_sweep_seconds": round(peer_s, 2),
            "ratio_cold_vs_ipmitool": round(peer_s / cold, 1) if cold > 0 else None,
            "ratio_warm_vs_ipmitool": round(peer_s / warm, 1) if warm > 0 else None,
        }
        print(f"""
agent benchmark: {a.total} nodes enrolled, {a.live} on live simulated BMCs ({synced} synced)
  sync sweeps of {a.live} live    : {', '.join(f'{x:.3f}' for x in sweeps)} s  (goal <= 1 s; the first opens every session)
  Ironic-style ipmitool sweep     : {peer_s:.2f} s  (8 workers, scaled from {sample})
  ratio, first sweep / later ones : {res['ratio_cold_vs_ipmitool']}x / {res['ratio_warm_vs_ipmitool']}x
  GET /v1/nodes?fields=uuid,power_state ({page} per page): p50 {res['list_p50_ms']} ms, p99 {res['list_p99_ms']} ms  (goal p99 <= 20 ms)
  agent RSS                       : {res['rss_mib']} MiB (peak {res['rss_peak_mib']} MiB)  (goal <= 100 MB)
  enrollment of {a.total} nodes : {enroll_s:.1f} s
""")
        if a.out:
            with open(a.out, "w") as f:
                json.dump(res, f, indent=2)
    finally:
        stop(agent)
        if sim:
            sim.kill()
            sim.wait()
        if os.environ.get("IRONRACK_BENCH_KEEP"):
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
