#!/usr/bin/env python3
"""Drive a running agent through a mass deploy (used by scripts/bench-deploy.sh).

Enrolls NODES ipmi nodes on consecutive simulated BMCs (one port each, the
simulator's MAC for that machine), takes them to `available` (manage, then
provide with automated cleaning off), then asks for all deploys at once and
polls until every node is `active` (or failed). Prints one JSON document.

Arguments: API_URL FIRST_BMC_PORT NODES MAC_BASE PASSWORD_FILE AGENT_PID
"""

import concurrent.futures as cf
import json
import sys
import time

import requests

HDR = {"X-OpenStack-Ironic-API-Version": "1.38"}


def mac_at(base, i):
    n = int(base.replace(":", ""), 16) + i
    h = f"{n:012x}"
    return ":".join(h[k : k + 2] for k in range(0, 12, 2))


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def main():
    api, first_port, count, mac_base, pw_file, pid = sys.argv[1:7]
    first_port, count, pid = int(first_port), int(count), int(pid)
    with open(pw_file) as f:
        password = f.readline().rstrip("\n")
    s = requests.Session()
    s.headers.update(HDR)

    def call(method, path, body=None, want=(200, 201, 202, 204)):
        for _ in range(200):
            r = s.request(method, api + path, json=body, timeout=60)
            if r.status_code in (503, 409):  # no free worker / locked: retry
                time.sleep(0.2)
                continue
            if r.status_code not in want:
                raise SystemExit(f"{method} {path}: {r.status_code} {r.text}")
            return r.json() if r.content else None
        raise SystemExit(f"{method} {path}: still busy")

    def enroll(i):
        node = call(
            "POST",
            "/v1/nodes",
            {
                "name": f"bench-{i:04d}",
                "driver": "ipmi",
                "driver_info": {
                    "ipmi_address": "127.0.0.1",
                    "ipmi_port": first_port + i,
                    "ipmi_username": "admin",
                    "ipmi_password": password,
                    "deploy_kernel": "deploy/vmlinuz",
                    "deploy_ramdisk": "deploy/initrd.img",
                },
                "properties": {"capabilities": "boot_mode:bios"},
                "instance_info": {"image_source": "http://images.example/bench.qcow2"},
            },
        )
        call("POST", "/v1/ports", {"address": mac_at(mac_base, i), "node_uuid": node["uuid"]})
        return node["uuid"]

    def states():
        r = call("GET", "/v1/nodes?fields=uuid,provision_state,last_error&limit=1000")
        return {n["uuid"]: n for n in r["nodes"]}

    def wait_all(uuids, state, bound):
        deadline = time.monotonic() + bound
        while True:
            st = states()
            done = [u for u in uuids if st[u]["provision_state"] == state]
            failed = [st[u] for u in uuids if st[u]["provision_state"] in ("deploy failed", "enroll", "clean failed", "error")]
            if failed:
                raise SystemExit(f"{len(failed)} node(s) failed, e.g. {failed[0]}")
            if len(done) == len(uuids):
                return
            if time.monotonic() > deadline:
                raise SystemExit(f"only {len(done)}/{len(uuids)} nodes reached {state}")
            time.sleep(0.5)

    with cf.ThreadPoolExecutor(32) as ex:
        uuids = list(ex.map(enroll, range(count)))
        list(ex.map(lambda u: call("PUT", f"/v1/nodes/{u}/states/provision", {"target": "manage"}), uuids))
    wait_all(uuids, "manageable", 600)
    with cf.ThreadPoolExecutor(32) as ex:
        list(ex.map(lambda u: call("PUT", f"/v1/nodes/{u}/states/provision", {"target": "provide"}), uuids))
    wait_all(uuids, "available", 600)

    rss_before = rss_kib(pid, "VmRSS")
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(64) as ex:
        list(ex.map(lambda u: call("PUT", f"/v1/nodes/{u}/states/provision", {"target": "active"}), uuids))
    accepted = time.monotonic() - t0
    wait_all(uuids, "active", 3600)
    total = time.monotonic() - t0
    print(
        json.dumps(
            {
                "nodes": count,
                "accept_all_s": round(accepted, 2),
                "all_active_s": round(total, 2),
                "agent_rss_before_kib": rss_before,
                "agent_peak_rss_kib": rss_kib(pid, "VmHWM"),
            }
        )
    )


if __name__ == "__main__":
    main()
