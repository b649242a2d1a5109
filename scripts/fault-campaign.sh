#!/usr/bin/env bash
# Fault campaign (issue 8) against real processes: `ironrack sim` serving
# 1000 IPMI BMCs and another serving 100 Redfish systems, and `ironrack
# serve` with all 1100 enrolled over the API. The same campaign as
# tests/fault_campaign.rs, plus a soak that watches the agent's memory:
#
#   1. faults: 20 % loss and 50 +- 30 ms latency on every IPMI BMC; 50 +- 30
#      ms latency and 2 % 503s on Redfish; 4 IPMI BMCs with a changed
#      password and 1 Redfish node enrolled with a wrong one; 1 IPMI BMC
#      answering garbage; 10 BMCs (8 IPMI, 2 Redfish) silenced once the
#      load has started;
#   2. wave 1: 500 power changes at once over the API (409/503 retried, as a
#      client would) while the power sync runs; then the checks: every
#      change landed (the simulator agrees) or ended with its target
#      cleared and last_error set, within power_state_change_timeout (+ one
#      BMC timeout + poll slack); the 16 faulty nodes in maintenance with
#      fault "power failure" and no other node ever seen in maintenance or
#      with a fault; no lock left; no BMC past its session limit;
#   3. soak, SOAK_MINUTES (default 10): the sync loop under the same
#      faults, 25 power changes every 10 s, the silent BMCs coming back and
#      going silent again every minute (maintenance, recovery, maintenance);
#      the agent's RSS sampled every 10 s, with a verdict: the first third
#      of the samples is the warm-up, and RSS is stable when the mean of the
#      last third is within 5 % of the middle third's;
#   4. wave 2 with `kill -9` of the agent once 200 changes are accepted,
#      then a restart on the same config and database: every node still
#      there with the same driver_info, no target left, each stale target
#      cleared with a last_error saying why (and logged), the rest of the
#      load lands, and the power sync records changes made behind the
#      agent's back again.
#
# Exit status 1 when a check failed. Everything runs under `nice`.
#
#   scripts/fault-campaign.sh
#   SOAK_MINUTES=2 scripts/fault-campaign.sh
#   IRONRACK_BIN=target/release/ironrack KEEP=1 scripts/fault-campaign.sh
#
# Environment: SOAK_MINUTES (10), IPMI_BASE (first IPMI port, 25000; uses
# 1000 ports), RF_PORT (26100), API_PORT (26101), IRONRACK_BIN (else a
# release build with cargo), KEEP=1 keeps the work directory (logs,
# database, stats).
set -euo pipefail
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
command -v python3 >/dev/null 2>&1 || { echo "fault-campaign: python3 is needed" >&2; exit 2; }
if [ -z "${IRONRACK_BIN:-}" ]; then
    nice -n 10 cargo build --release -q -j 2
    IRONRACK_BIN="${CARGO_TARGET_DIR:-$REPO/target}/release/ironrack"
fi
[ -x "$IRONRACK_BIN" ] || { echo "fault-campaign: no binary at $IRONRACK_BIN" >&2; exit 2; }
export IRONRACK_BIN
exec nice -n 10 python3 - "$@" <<'PY'
import json, os, random, re, signal, subprocess, sys, tempfile, threading, time
import urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor

BIN = os.environ["IRONRACK_BIN"]
SOAK_MINUTES = float(os.environ.get("SOAK_MINUTES", "10"))
IPMI_BASE = int(os.environ.get("IPMI_BASE", "25000"))
RF_PORT = int(os.environ.get("RF_PORT", "26100"))
API_PORT = int(os.environ.get("API_PORT", "26101"))
KEEP = os.environ.get("KEEP") == "1"

IPMI, REDFISH, CHANGES, MAX_SESSIONS = 1000, 100, 500, 8
SYNC_INTERVAL, BMC_TIMEOUT, CHANGE_TIMEOUT, MAX_RETRIES = 3, 10, 20, 3
DEAD_IPMI = [101, 202, 303, 404, 505, 606, 707, 808]
DEAD_REDFISH = [11, 61]
REJECT_IPMI = [150, 350, 650, 950]
REJECT_REDFISH = [33]
GARBAGE_IPMI = [500]
USER, PASSWORD, WRONG = "admin", "fault-campaign-pw", "not-the-password"
BOUND = CHANGE_TIMEOUT + BMC_TIMEOUT + 3

work = tempfile.mkdtemp(prefix="ironrack-fault-campaign-")
procs = {}
failures = []
t0 = time.monotonic()


def log(msg):
    print(f"[{time.monotonic() - t0:7.1f}s] {msg}", flush=True)


def check(ok, msg):
    if not ok:
        failures.append(msg)
        log("FAIL: " + msg)
    return ok


def name(m):
    kind, i = m
    return f"ipmi-{i:04d}" if kind == "ipmi" else f"rf-{i:03d}"


def faulty(m):
    kind, i = m
    if kind == "ipmi":
        return i in DEAD_IPMI or i in REJECT_IPMI or i in GARBAGE_IPMI
    return i in DEAD_REDFISH or i in REJECT_REDFISH


MACHINES = [("ipmi", i) for i in range(IPMI)] + [("redfish", i) for i in range(REDFISH)]
FAULTY = [m for m in MACHINES if faulty(m)]
HEALTHY = [m for m in MACHINES if not faulty(m)]


# ------------------------------------------------------------ processes

def start(key, argv, env=None):
    out = open(os.path.join(work, key + ".log"), "ab")
    procs[key] = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                  env=env)
    return procs[key]


def stop_all():
    # The agent first (it closes its BMC sessions), then the simulators.
    for key in sorted(procs, key=lambda k: k != "agent"):
        p = procs[key]
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def agent_log():
    try:
        with open(os.path.join(work, "agent.log"), errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def start_agent():
    before = agent_log().count("API listening on http://")
    env = dict(os.environ, RUST_LOG="info")
    p = start("agent", [BIN, "serve", "--config", os.path.join(work, "ironrack.toml")], env)
    deadline = time.monotonic() + 60
    while agent_log().count("API listening on http://") <= before:
        if p.poll() is not None:
            sys.exit(f"the agent exited ({p.returncode}):\n{agent_log()[-4000:]}")
        if time.monotonic() > deadline:
            sys.exit("the agent did not start listening in 60 s")
        time.sleep(0.1)
    return p


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def threads(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def control(path, line):
    with open(path, "a") as f:
        f.write(line + "\n")


def stats(key):
    """The simulator's stats file (written every second)."""
    with open(os.path.join(work, key + "-stats.json")) as f:
        return json.load(f)


def machine_on(ipmi_stats, rf_stats, m):
    kind, i = m
    if kind == "ipmi":
        return ipmi_stats["ipmi"][i]["stats"]["power_on"]
    return rf_stats["redfish"]["systems"][i]["power_on"]


# ------------------------------------------------------------------ API

API = f"http://127.0.0.1:{API_PORT}"
HEADERS = {"X-OpenStack-Ironic-API-Version": "latest", "Content-Type": "application/json"}


def call(method, path, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(API + path, data=data, method=method, headers=HEADERS)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            return r.status, (json.loads(raw) if raw else None)
    except urllib.error.HTTPError as e:
        raw = e.read()
        try:
            return e.code, json.loads(raw)
        except ValueError:
            return e.code, raw.decode(errors="replace")


VIEW = "uuid,name,power_state,target_power_state,last_error,maintenance,maintenance_reason,fault,reservation"
FULL = "uuid,name,driver,driver_info,maintenance,fault"


def list_nodes(fields):
    out, marker = [], None
    while True:
        path = f"/v1/nodes?fields={fields}&limit=1000" + (f"&marker={marker}" if marker else "")
        status, doc = call("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        page = doc["nodes"]
        out.extend(page)
        if len(page) < 1000:
            return out
        marker = page[-1]["uuid"]


class Seen:
    def __init__(self):
        self.lock = threading.Lock()
        self.latest = {}
        self.accepted = {}
        self.cleared = {}
        self.ever_maintenance = set()
        self.polls = 0


seen = Seen()
uuid_of, machine_of = {}, {}


def poller():
    while True:
        started = time.monotonic()
        try:
            nodes = list_nodes(VIEW)
        except Exception:
            time.sleep(1)
            continue
        ended = time.monotonic()
        with seen.lock:
            seen.polls += 1
            for n in nodes:
                u = n["uuid"]
                if n["maintenance"] or n["fault"]:
                    seen.ever_maintenance.add(u)
                if n["target_power_state"] is None:
                    at = seen.accepted.get(u)
                    if at is not None and at < started and u not in seen.cleared:
                        seen.cleared[u] = ended
                seen.latest[u] = n
        time.sleep(1)


def wait_views(what, secs, pred):
    with seen.lock:
        polls = seen.polls
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline:
        with seen.lock:
            if seen.polls > polls and pred(seen.latest):
                return dict(seen.latest)
        time.sleep(0.25)
    check(False, f"{what}: not reached within {secs} s")
    with seen.lock:
        return dict(seen.latest)


gate = threading.Event()
gate.set()
attempted = set()
attempted_lock = threading.Lock()


def change(m, target, give_up=240):
    u = uuid_of[m]
    deadline = time.monotonic() + give_up
    while time.monotonic() < deadline:
        gate.wait()
        with attempted_lock:
            attempted.add(u)
        try:
            status, body = call("PUT", f"/v1/nodes/{u}/states/power", {"target": target})
        except Exception:
            status, body = None, None
        if status == 202:
            with seen.lock:
                seen.accepted[u] = time.monotonic()
                seen.cleared.pop(u, None)
            return True
        if status not in (None, 409, 503):
            check(False, f"{name(m)}: PUT power {target}: {status} {body}")
            return False
        time.sleep(0.1 + random.random() * 0.7)
    check(False, f"{name(m)}: power change {target} never accepted")
    return False


def end_state(target):
    return "power off" if target in ("power off", "soft power off") else "power on"


def plan(wave):
    nodes = list(FAULTY) + [m for m in HEALTHY
                            if (m[0] == "ipmi" and m[1] % 2 == 0) or (m[0] == "redfish" and m[1] % 2 == 1)]
    nodes = nodes[:CHANGES]
    out = []
    for k, m in enumerate(nodes):
        r = k % 5
        if wave == 1:
            t = "power on" if r <= 2 else ("rebooting" if r == 3 else "power off")
        else:
            t = "power off" if r <= 2 else ("power on" if r == 3 else "rebooting")
        out.append((m, t))
    return out


def settle(what, plan_):
    uuids = [uuid_of[m] for m, _ in plan_]
    deadline = time.monotonic() + BOUND + 60
    while time.monotonic() < deadline:
        with seen.lock:
            if all(u in seen.cleared for u in uuids):
                return dict(seen.latest)
        time.sleep(0.25)
    with seen.lock:
        missing = [name(machine_of[u]) for u in uuids if u not in seen.cleared]
    check(False, f"{what}: {len(missing)} changes never seen finished: {missing[:10]}")
    with seen.lock:
        return dict(seen.latest)


def check_outcomes(what, plan_, views):
    time.sleep(2.5)  # the simulators' stats files catch up
    ist, rst = stats("ipmi"), stats("redfish")
    landed = failed = 0
    slowest = 0.0
    with seen.lock:
        accepted, cleared = dict(seen.accepted), dict(seen.cleared)
    for m, target in plan_:
        u = uuid_of[m]
        if u not in accepted or u not in cleared:
            check(False, f"{what}: {name(m)} not accepted or never finished")
            continue
        took = cleared[u] - accepted[u]
        slowest = max(slowest, took)
        check(took <= BOUND, f"{what}: {name(m)} '{target}' took {took:.1f} s (bound {BOUND} s)")
        v = views[u]
        check(v["target_power_state"] is None, f"{what}: {name(m)} target left: {v}")
        if v["last_error"] is None:
            want = end_state(target)
            check(v["power_state"] == want, f"{what}: {name(m)} no last_error but not landed: {v}")
            check(machine_on(ist, rst, m) == (want == "power on"),
                  f"{what}: {name(m)}: the agent says {want}, the simulator disagrees")
            landed += 1
        else:
            check(v["last_error"].strip() != "", f"{what}: {name(m)}: empty last_error")
            failed += 1
    log(f"{what}: {landed} landed, {failed} ended with last_error; slowest {slowest:.1f} s "
        f"(bound {BOUND} s)")
    check(landed >= CHANGES // 2, f"{what}: only {landed} changes landed")


def check_maintenance(what):
    views = wait_views(f"{what}: faulty nodes in maintenance", 180, lambda l: all(
        uuid_of[m] in l and l[uuid_of[m]]["maintenance"] and l[uuid_of[m]]["fault"] == "power failure"
        for m in FAULTY))
    for m in FAULTY:
        why = views[uuid_of[m]]["maintenance_reason"] or ""
        check("max retries exceeded" in why, f"{what}: {name(m)} maintenance_reason: {why}")
    with seen.lock:
        wrongly = [name(m) for m in HEALTHY if uuid_of[m] in seen.ever_maintenance]
    check(not wrongly, f"{what}: healthy nodes seen in maintenance or with a fault: {wrongly}")


def check_drained(what):
    wait_views(f"{what}: every lock released", 60, lambda l: len(l) == IPMI + REDFISH and all(
        v["reservation"] is None and v["target_power_state"] is None for v in l.values()))
    check("panicked" not in agent_log(), f"{what}: the agent log has a panic")


def check_sessions(what):
    st = stats("ipmi")["ipmi"]
    peaks, refused = {}, 0
    for i, b in enumerate(st):
        s = b["stats"]
        peaks[s["sessions_peak"]] = peaks.get(s["sessions_peak"], 0) + 1
        check(s["sessions_peak"] <= MAX_SESSIONS, f"{what}: BMC {i} peaked at {s['sessions_peak']}")
        refused += s["sessions_refused"]
    check(st[GARBAGE_IPMI[0]]["stats"]["garbage_sent"] > 0, "the garbage BMC sent nothing")
    log(f"{what}: sessions peak per BMC {dict(sorted(peaks.items()))}, {refused} refused in all")


def run_wave(plan_, kill_after=None):
    with seen.lock:
        seen.accepted.clear()
        seen.cleared.clear()
    pool = ThreadPoolExecutor(max_workers=len(plan_))
    futs = [pool.submit(change, m, t) for m, t in plan_]
    return pool, futs


# ------------------------------------------------------------- campaign

def main():
    log(f"work directory {work}")
    pw = os.path.join(work, "pw")
    with open(pw, "w") as f:
        f.write(PASSWORD + "\n")
    os.chmod(pw, 0o600)
    ipmi_ctl, rf_ctl = os.path.join(work, "ipmi.control"), os.path.join(work, "redfish.control")
    for p in (ipmi_ctl, rf_ctl):
        open(p, "w").close()
    start("ipmi-sim", [BIN, "sim", "--ipmi", f"127.0.0.1:{IPMI_BASE}", "--count", str(IPMI),
                       "--password-file", pw, "--max-sessions", str(MAX_SESSIONS),
                       "--power-delay-ms", "1000", "--loss", "0.2", "--latency-ms", "50",
                       "--jitter-ms", "30", "--garbage", ",".join(map(str, GARBAGE_IPMI)),
                       "--reject-auth", ",".join(map(str, REJECT_IPMI)),
                       "--control", ipmi_ctl, "--stats-file", os.path.join(work, "ipmi-stats.json")])
    start("redfish-sim", [BIN, "sim", "--redfish", f"127.0.0.1:{RF_PORT}", "--count", str(REDFISH),
                          "--password-file", pw, "--power-delay-ms", "1000", "--latency-ms", "50",
                          "--jitter-ms", "30", "--error-503-rate", "0.02", "--control", rf_ctl,
                          "--stats-file", os.path.join(work, "redfish-stats.json")])
    with open(os.path.join(work, "ironrack.toml"), "w") as f:
        f.write(f"""[api]
listen = "127.0.0.1:{API_PORT}"
[store]
path = "{work}/ironrack.db"
[conductor]
workers = 100
sync_power_state_interval = {SYNC_INTERVAL}
sync_power_state_workers = 256
power_state_sync_max_retries = {MAX_RETRIES}
power_state_change_timeout = {CHANGE_TIMEOUT}
power_failure_recovery_interval = 10
bmc_timeout = {BMC_TIMEOUT}
power_poll_interval = 0.5
""")
    deadline = time.monotonic() + 60
    while not (os.path.exists(os.path.join(work, "ipmi-stats.json"))
               and os.path.exists(os.path.join(work, "redfish-stats.json"))):
        for key in ("ipmi-sim", "redfish-sim"):
            if procs[key].poll() is not None:
                sys.exit(f"{key} exited; see {work}/{key}.log")
        if time.monotonic() > deadline:
            sys.exit("the simulators did not start")
        time.sleep(0.2)
    agent = start_agent()
    log(f"agent pid {agent.pid}, simulators up")

    def body(m):
        kind, i = m
        if kind == "ipmi":
            return {"name": name(m), "driver": "ipmi", "driver_info": {
                "ipmi_address": "127.0.0.1", "ipmi_port": IPMI_BASE + i,
                "ipmi_username": USER, "ipmi_password": PASSWORD}}
        return {"name": name(m), "driver": "redfish", "driver_info": {
            "redfish_address": f"http://127.0.0.1:{RF_PORT}",
            "redfish_system_id": f"/redfish/v1/Systems/sys-{i:04d}",
            "redfish_username": USER,
            "redfish_password": WRONG if i in REJECT_REDFISH else PASSWORD}}

    def enroll(m):
        status, n = call("POST", "/v1/nodes", body(m))
        if status != 201:
            sys.exit(f"enrolling {name(m)}: {status} {n}")
        return m, n["uuid"]

    with ThreadPoolExecutor(max_workers=16) as ex:
        for m, u in ex.map(enroll, MACHINES):
            uuid_of[m], machine_of[u] = u, m
    log(f"enrolled {len(uuid_of)} nodes")
    threading.Thread(target=poller, daemon=True).start()
    wait_views("initial power states recorded", 180, lambda l: all(
        uuid_of[m] in l and l[uuid_of[m]]["power_state"] for m in HEALTHY))
    log("initial sync done")

    # ------------------------------------------------------------ wave 1
    wave1 = plan(1)
    pool, futs = run_wave(wave1)
    while True:
        with seen.lock:
            if len(seen.accepted) >= 50:
                break
        time.sleep(0.05)
    control(ipmi_ctl, "unresponsive ipmi " + ",".join(map(str, DEAD_IPMI)))
    control(rf_ctl, "unresponsive redfish " + ",".join(map(str, DEAD_REDFISH)))
    log("10 BMCs silenced")
    for f in futs:
        f.result()
    pool.shutdown()
    log("wave 1: all accepted")
    views = settle("wave 1", wave1)
    check_outcomes("wave 1", wave1, views)
    check_maintenance("wave 1")
    check_drained("wave 1")
    check_sessions("wave 1")

    # -------------------------------------------------------------- soak
    samples = []
    soak_end = time.monotonic() + SOAK_MINUTES * 60
    log(f"soak: {SOAK_MINUTES:g} minutes, RSS every 10 s")
    soak_pool = ThreadPoolExecutor(max_workers=64)
    silent, next_flip = True, time.monotonic() + 60
    rng = random.Random(8)
    while time.monotonic() < soak_end:
        if agent.poll() is not None:
            check(False, f"the agent died during the soak ({agent.returncode})")
            break
        samples.append(rss_kib(agent.pid))
        for m in rng.sample(MACHINES, 25):
            soak_pool.submit(change, m, rng.choice(["power on", "power off", "rebooting"]), 60)
        if time.monotonic() >= next_flip:
            silent = not silent
            word = "unresponsive" if silent else "responsive"
            control(ipmi_ctl, f"{word} ipmi " + ",".join(map(str, DEAD_IPMI)))
            control(rf_ctl, f"{word} redfish " + ",".join(map(str, DEAD_REDFISH)))
            next_flip += 60
        time.sleep(max(0.0, 10 - (time.monotonic() - t0) % 10))
    if not silent:
        control(ipmi_ctl, "unresponsive ipmi " + ",".join(map(str, DEAD_IPMI)))
        control(rf_ctl, "unresponsive redfish " + ",".join(map(str, DEAD_REDFISH)))
    soak_pool.shutdown(wait=True)
    if samples:
        mib = [s / 1024 for s in samples]
        third = max(1, len(mib) // 3)
        first = sum(mib[:third]) / third
        mid = mib[third:-third] or mib[:third]
        middle = sum(mid) / len(mid)
        last = sum(mib[-third:]) / third
        # The first third is the warm-up (sessions, buffers, allocator arenas
        # reaching their working size); after it a leak shows as the last
        # third above the middle one.
        growth = (last - middle) / middle * 100 if middle else 0.0
        log("soak RSS samples (MiB): " + " ".join(f"{x:.1f}" for x in mib))
        log(f"soak RSS: {len(mib)} samples, min {min(mib):.1f}, max {max(mib):.1f}, "
            f"first {mib[0]:.1f}, last {mib[-1]:.1f} MiB; means of the thirds {first:.1f}, "
            f"{middle:.1f}, {last:.1f} MiB (last vs middle {growth:+.1f} %)")
        tail = mib[third:]
        if len(tail) >= 2:
            xs = [i * 10 / 60 for i in range(len(tail))]
            mx, my = sum(xs) / len(xs), sum(tail) / len(tail)
            slope = sum((x - mx) * (y - my) for x, y in zip(xs, tail)) / sum((x - mx) ** 2 for x in xs)
            log(f"soak RSS: slope after the warm-up {slope:+.2f} MiB/min; agent threads "
                f"{threads(agent.pid)}")
        stable = growth <= 5.0
        log("soak: RSS " + ("STABLE" if stable else "GROWING")
            + " (after the warm-up third, the last third within 5 % of the middle one)")
        check(stable, f"agent RSS grew {growth:+.1f} % from the middle to the last third of the soak")
    # The soak's changes settle and the silenced BMCs are back in maintenance.
    check_drained("after the soak")
    check_maintenance("after the soak")

    # ------------------------------------------------- wave 2 and kill -9
    before = {n["uuid"]: n for n in list_nodes(FULL)}
    check(len(before) == IPMI + REDFISH, f"{len(before)} nodes before the kill")
    for m in FAULTY:
        check(before[uuid_of[m]]["maintenance"], f"{name(m)} is not in maintenance before the kill")
    wave2 = plan(2)
    with attempted_lock:
        attempted.clear()
    pool, futs = run_wave(wave2)
    while True:
        with seen.lock:
            if len(seen.accepted) >= 200:
                break
        time.sleep(0.02)
    gate.clear()
    agent.send_signal(signal.SIGKILL)
    agent.wait()
    stale_logged_before = agent_log().count("cleared a target power state left by an earlier run")
    with seen.lock:
        log(f"kill -9 with {len(seen.accepted)} of {CHANGES} wave-2 changes accepted")
    time.sleep(2)
    agent = start_agent()
    log(f"restarted: agent pid {agent.pid}")
    after = list_nodes(FULL)
    check(len(after) == IPMI + REDFISH, f"{len(after)} nodes after the restart")
    for n in after:
        b = before.get(n["uuid"])
        if not check(b is not None, f"node {n['uuid']} appeared from nowhere"):
            continue
        for k in ("name", "driver", "driver_info", "maintenance", "fault"):
            check(n[k] == b[k], f"{n['name']}: {k} changed across kill -9")
    stale = []
    with attempted_lock:
        tried = set(attempted)
    for n in list_nodes(VIEW):
        check(n["target_power_state"] is None, f"{n['name']}: target left after the restart")
        if "The agent stopped while the power state change" in (n["last_error"] or ""):
            check(n["uuid"] in tried, f"{n['name']}: stale target on a node nobody changed")
            stale.append(n["uuid"])
    logged = agent_log().count("cleared a target power state left by an earlier run") - stale_logged_before
    log(f"after restart: {len(stale)} stale targets cleared, {logged} logged")
    check(len(stale) > 0, "no change was in flight at the kill")
    check(len(stale) == logged, "stale targets cleared and logged differ")
    gate.set()
    for f in futs:
        f.result()
    pool.shutdown()
    log("wave 2: all accepted")
    views = settle("wave 2", wave2)
    check_outcomes("wave 2", wave2, views)
    # The sync resumed: press buttons behind the agent's back.
    time.sleep(1.5)
    ist, rst = stats("ipmi"), stats("redfish")
    flips = [("ipmi", 1), ("ipmi", 3), ("ipmi", 999), ("redfish", 0), ("redfish", 98)]
    want = {}
    for m in flips:
        on = not machine_on(ist, rst, m)
        control(ipmi_ctl if m[0] == "ipmi" else rf_ctl,
                f"power {m[0]} {m[1]} {'on' if on else 'off'}")
        want[uuid_of[m]] = "power on" if on else "power off"
    wait_views("the sync records changes after the restart", 90,
               lambda l: all(l.get(u, {}).get("power_state") == s for u, s in want.items()))
    check_maintenance("after the restart")
    check_drained("after the restart")
    check_sessions("at the end")
    log(f"agent RSS at the end {rss_kib(agent.pid) / 1024:.1f} MiB")


try:
    main()
except SystemExit as e:
    failures.append(str(e))
    print(e, file=sys.stderr)
finally:
    stop_all()
    if KEEP or failures:
        log(f"kept {work}")
    else:
        subprocess.run(["rm", "-rf", work])
if failures:
    log(f"FAILED: {len(failures)} check(s)")
    for f in failures[:40]:
        print("  - " + f)
    sys.exit(1)
log("fault campaign: every check passed")
PY
