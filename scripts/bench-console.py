#!/usr/bin/env python3
"""Console keystroke round trip: ironrack's bridge against ipmitool.

A keystroke goes in, the simulated host (`ironrack sim --sol-echo`) echoes
it, and the time until it comes back out is one sample:

  * ironrack: TCP viewer -> agent bridge -> SOL -> BMC -> host echo -> SOL
    -> agent -> viewer, on consoles enabled through the agent's API;
  * ipmitool: stdin -> `ipmitool -I lanplus ... sol activate` -> SOL -> BMC
    -> host echo -> SOL -> ipmitool -> stdout, one process per console (what
    Ironic's socat console runs per node).

Each run opens N consoles on N simulated BMCs, checks each echoes, and then
types on one of them, or on all of them at once, one keystroke in flight per
console (a person typing), ROUNDS round trips each after a short warm-up.
With many typing at once this script's own event loop is part of what is
measured, equally for both sides. Both sides run against the same simulator
process, one after the other. Not a test: nothing here asserts a time. Run
through scripts/bench-console.sh, which builds and starts everything.
"""

import argparse
import asyncio
import http.client
import json
import sys
import time

API_VERSION = "latest"
WARMUP = 5


def log(msg):
    print(f"[bench-console] {msg}", file=sys.stderr, flush=True)


class Api:
    def __init__(self, url):
        hostport = url.removeprefix("http://").rstrip("/")
        host, port = hostport.rsplit(":", 1)
        self.host, self.port = host, int(port)

    def call(self, method, path, body=None):
        c = http.client.HTTPConnection(self.host, self.port, timeout=60)
        hdrs = {"X-OpenStack-Ironic-API-Version": API_VERSION}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            hdrs["Content-Type"] = "application/json"
        try:
            c.request(method, path, body=data, headers=hdrs)
            r = c.getresponse()
            raw = r.read()
        finally:
            c.close()
        return r.status, (json.loads(raw) if raw else None)


class Stream:
    """One console end: bytes in, bytes out."""

    def __init__(self, reader, writer):
        self.r, self.w = reader, writer
        self.buf = bytearray()

    async def send(self, b):
        self.w.write(b)
        await self.w.drain()

    async def expect(self, b, timeout):
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b)
            if i >= 0:
                del self.buf[: i + len(b)]
                return
            left = deadline - time.monotonic()
            if left <= 0:
                raise asyncio.TimeoutError
            chunk = await asyncio.wait_for(self.r.read(4096), left)
            if not chunk:
                raise EOFError("console closed")
            self.buf += chunk

    async def drain_input(self, quiet=0.3):
        """Throw away whatever arrives until the console is quiet."""
        while True:
            try:
                chunk = await asyncio.wait_for(self.r.read(4096), quiet)
            except asyncio.TimeoutError:
                break
            if not chunk:
                raise EOFError("console closed")
        self.buf.clear()

    async def ready(self, within=120.0):
        """Type '#' until it comes back: SOL is up end to end."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await self.send(b"#")
            try:
                await self.expect(b"#", 1.0)
                await self.drain_input()
                return
            except asyncio.TimeoutError:
                continue
        raise RuntimeError("the console never echoed")

    async def measure(self, rounds, samples):
        for i in range(WARMUP + rounds):
            key = str(i % 10).encode()
            t0 = time.perf_counter_ns()
            await self.send(key)
            await self.expect(key, 30.0)
            if i >= WARMUP:
                samples.append((time.perf_counter_ns() - t0) / 1e6)


def percentile(sorted_ms, q):
    return sorted_ms[min(len(sorted_ms) - 1, int(round(q * (len(sorted_ms) - 1))))]


async def type_on(streams, typing, rounds):
    """All consoles up end to end, then `typing` of them typing at once."""
    samples = []
    await asyncio.gather(*(s.ready() for s in streams))
    await asyncio.gather(*(s.measure(rounds, samples) for s in streams[:typing]))
    samples.sort()
    return samples


# ---- ironrack: consoles enabled through the agent's API ----------------------


def enroll(api, args):
    password = open(args.pwfile).read().splitlines()[0]
    for i in range(args.count):
        body = {
            "name": f"bench-con-{i:03d}",
            "driver": "ipmi",
            "driver_info": {
                "ipmi_address": "127.0.0.1",
                "ipmi_port": args.sim_base + i,
                "ipmi_username": args.user,
                "ipmi_password": password,
            },
        }
        st, doc = api.call("POST", "/v1/nodes", body)
        if st != 201:
            raise RuntimeError(f"enroll {i}: {st} {doc}")


def set_consoles(api, n, enabled):
    for i in range(n):
        path = f"/v1/nodes/bench-con-{i:03d}/states/console"
        for _ in range(600):
            st, doc = api.call("PUT", path, {"enabled": enabled})
            if st == 202:
                break
            if st in (409, 503):  # locked / no free worker yet
                time.sleep(0.05)
                continue
            raise RuntimeError(f"{path}: {st} {doc}")
    ports = []
    deadline = time.monotonic() + 120
    for i in range(n):
        path = f"/v1/nodes/bench-con-{i:03d}/states/console"
        while True:
            st, doc = api.call("GET", path)
            if st != 200:
                raise RuntimeError(f"{path}: {st} {doc}")
            info = doc.get("console_info")
            if doc["console_enabled"] == enabled and (bool(info) == enabled):
                if enabled:
                    ports.append(int(info["url"].rsplit(":", 1)[1]))
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"{path}: never {'enabled' if enabled else 'disabled'}: {doc}")
            time.sleep(0.05)
    return ports


async def ironrack_run(api, n, typing, rounds):
    ports = set_consoles(api, n, True)
    streams = []
    for p in ports:
        r, w = await asyncio.open_connection("127.0.0.1", p)
        s = Stream(r, w)
        await s.expect(b"you have write access", 30.0)
        streams.append(s)
    try:
        return await type_on(streams, typing, rounds)
    finally:
        for s in streams:
            s.w.close()
        set_consoles(api, n, False)


# ---- ipmitool: one `sol activate` process per console ------------------------


async def ipmitool_run(args, n, typing, rounds):
    procs = []
    for i in range(n):
        p = await asyncio.create_subprocess_exec(
            args.ipmitool, "-I", "lanplus", "-H", "127.0.0.1",
            "-p", str(args.sim_base + i), "-U", args.user, "-f", args.pwfile,
            "-C", "17", "sol", "activate",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL)
        procs.append(p)
    streams = [Stream(p.stdout, p.stdin) for p in procs]
    try:
        return await type_on(streams, typing, rounds)
    finally:
        # ipmitool's escape ends the session (and deactivates SOL).
        for s in streams:
            try:
                await s.send(b"\r~.")
            except (BrokenPipeError, ConnectionResetError):
                pass
        for p in procs:
            try:
                await asyncio.wait_for(p.wait(), 10)
            except asyncio.TimeoutError:
                p.kill()
                await p.wait()


def row(samples):
    return percentile(samples, 0.50), percentile(samples, 0.99)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--api", required=True)
    ap.add_argument("--sim-base", type=int, required=True)
    ap.add_argument("--count", type=int, default=100)
    ap.add_argument("--user", default="admin")
    ap.add_argument("--pwfile", required=True)
    ap.add_argument("--ipmitool", default="ipmitool")
    ap.add_argument("--rounds-one", type=int, default=500)
    ap.add_argument("--rounds-many", type=int, default=50)
    args = ap.parse_args()

    api = Api(args.api)
    enroll(api, args)
    results = []
    runs = ((1, 1, args.rounds_one), (args.count, 1, args.rounds_one),
            (args.count, args.count, args.rounds_many))
    for n, typing, rounds in runs:
        what = f"{n} open, {typing} typing, {rounds} round trips each"
        log(f"{what}: ipmitool sol activate")
        theirs = await ipmitool_run(args, n, typing, rounds)
        log(f"{what}: ironrack bridge")
        ours = await ironrack_run(api, n, typing, rounds)
        results.append((n, typing, len(ours), row(ours), row(theirs)))

    print()
    print("| consoles open | typing at once | samples | ironrack p50 / p99 | "
          "ipmitool p50 / p99 | ours / ipmitool p50 / p99 |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, typing, ns, (o50, o99), (t50, t99) in results:
        print(f"| {n} | {typing} | {ns} | {o50:.3f} / {o99:.3f} ms | {t50:.3f} / {t99:.3f} ms "
              f"| {o50 / t50:.2f}x / {o99 / t99:.2f}x |")


if __name__ == "__main__":
    asyncio.run(main())
