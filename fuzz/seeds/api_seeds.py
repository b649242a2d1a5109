#!/usr/bin/env python3
"""Record the request bodies the stock `baremetal` CLI sends, as seeds.

Usage: api_seeds.py BAREMETAL_BIN OUT_DIR

Serves a minimal Ironic API on loopback (version documents, and a node or
port document for every request) and runs the CLI commands an operator
and the demo use; every request body is saved as <OUT_DIR>/<name>.json.
"""
import base64
import gzip
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

BIN, OUT = sys.argv[1], sys.argv[2]
os.makedirs(OUT, exist_ok=True)
UUID = "1be26c0b-03f2-4d2e-ae87-c02d7f33c123"
current = {"name": "x", "n": 0}

NODE = {"uuid": UUID, "name": "node-1", "driver": "ipmi", "driver_info": {}, "properties": {},
        "instance_info": {}, "extra": {}, "provision_state": "enroll", "power_state": None,
        "maintenance": False, "links": []}
PORT = {"uuid": "3ff4a1f9-2c5d-4d0e-9f11-0e9d7b1b2c3d", "address": "52:54:00:12:34:56",
        "node_uuid": UUID, "pxe_enabled": True, "extra": {}, "links": []}
VERSION = {"id": "v1", "status": "CURRENT", "min_version": "1.1", "version": "1.109",
           "links": [{"href": "http://127.0.0.1/v1/", "rel": "self"}]}


class H(BaseHTTPRequestHandler):
    def log_message(self, *a):
        pass

    def reply(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("OpenStack-API-Version", "baremetal 1.109")
        self.send_header("X-OpenStack-Ironic-API-Minimum-Version", "1.1")
        self.send_header("X-OpenStack-Ironic-API-Maximum-Version", "1.109")
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length") or 0)
        data = self.rfile.read(n) if n else b""
        if data.strip():
            current["n"] += 1
            with open(os.path.join(OUT, "%s-%s.json" % (current["name"], current["n"])), "wb") as f:
                f.write(data)
        return data

    def do_GET(self):
        p = self.path.split("?")[0].rstrip("/")
        if p == "":
            self.reply(200, {"name": "OpenStack Ironic API", "versions": [VERSION], "default_version": VERSION})
        elif p == "/v1":
            self.reply(200, dict(VERSION, nodes=[], ports=[]))
        elif p.startswith("/v1/ports"):
            self.reply(200, {"ports": [PORT]} if p == "/v1/ports" else PORT)
        elif p == "/v1/nodes":
            self.reply(200, {"nodes": [NODE]})
        else:
            self.reply(200, NODE)

    def do_POST(self):
        self.body()
        self.reply(201, PORT if "/ports" in self.path else NODE)

    def do_PATCH(self):
        self.body()
        self.reply(200, NODE)

    def do_PUT(self):
        self.body()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.send_header("OpenStack-API-Version", "baremetal 1.109")
        self.end_headers()

    def do_DELETE(self):
        self.send_response(204)
        self.end_headers()


srv = HTTPServer(("127.0.0.1", 0), H)
threading.Thread(target=srv.serve_forever, daemon=True).start()
EP = "http://127.0.0.1:%d" % srv.server_address[1]

cd = os.path.join(OUT, ".configdrive")
os.makedirs(cd, exist_ok=True)
with open(os.path.join(cd, "meta_data.json"), "w") as f:
    f.write('{"uuid": "%s"}' % UUID)
# A config drive as Nova sends it: gzip, then base64, in a file.
cd_file = os.path.join(cd, "configdrive.gz.b64")
with open(cd_file, "wb") as f:
    f.write(base64.b64encode(gzip.compress(b"config drive image")))

RUNS = [
    ("node-create", ["node", "create", "--driver", "ipmi", "--name", "node-1",
                     "--driver-info", "ipmi_address=127.0.0.1", "--driver-info", "ipmi_port=9623",
                     "--driver-info", "ipmi_username=admin", "--driver-info", "ipmi_password=fuzz-seed-pw",
                     "--driver-info", "ipmi_cipher_suite=3", "--property", "capabilities=boot_mode:uefi",
                     "--resource-class", "baremetal"]),
    ("node-create-redfish", ["node", "create", "--driver", "redfish", "--uuid", UUID,
                             "--driver-info", "redfish_address=http://127.0.0.1:8000",
                             "--driver-info", "redfish_system_id=/redfish/v1/Systems/sys-0001",
                             "--driver-info", "redfish_username=admin",
                             "--driver-info", "redfish_password=fuzz-seed-pw",
                             "--driver-info", "redfish_verify_ca=false", "--extra", "rack=r1"]),
    ("node-set", ["node", "set", "node-1", "--driver-info", "ipmi_password=******",
                  "--driver-info", "deploy_kernel=deploy/vmlinuz", "--driver-info", "deploy_ramdisk=deploy/initrd",
                  "--driver-info", "kernel_append_params=%default% console=ttyS0"]),
    ("node-set-instance", ["node", "set", "node-1", "--instance-info", "image_source=http://images/ubuntu.qcow2",
                           "--instance-info", "root_gb=10", "--instance-uuid", "0c6a39a4-8e0f-4f21-9d0c-2f6d1b1a3f0e"]),
    ("node-set-misc", ["node", "set", "node-1", "--name", "node-renamed", "--description", "rack 1 slot 4",
                       "--property", "cpus=8", "--extra", "owner=ops", "--resource-class", "gold"]),
    ("node-unset", ["node", "unset", "node-1", "--driver-info", "ipmi_kg", "--property", "cpus",
                    "--instance-info", "root_gb", "--extra", "owner", "--description"]),
    ("node-set-hw-profile", ["node", "set", "node-1", "--driver-info", "hw_profile=supermicro"]),
    ("port-create", ["port", "create", "52:54:00:12:34:56", "--node", UUID, "--pxe-enabled", "true",
                     "--local-link-connection", "switch_id=00:00:00:00:00:01",
                     "--local-link-connection", "port_id=Eth1/1", "--physical-network", "physnet1"]),
    ("port-create-plain", ["port", "create", "52-54-00-12-34-57", "--node", UUID]),
    ("power-on", ["node", "power", "on", "node-1"]),
    ("power-soft-off", ["node", "power", "off", "--soft", "--power-timeout", "30", "node-1"]),
    ("reboot", ["node", "reboot", "node-1"]),
    ("boot-device", ["node", "boot", "device", "set", "node-1", "pxe", "--persistent"]),
    ("maintenance", ["node", "maintenance", "set", "node-1", "--reason", "disk swap"]),
    ("manage", ["node", "manage", "node-1"]),
    ("provide", ["node", "provide", "node-1"]),
    ("deploy", ["node", "deploy", "node-1", "--config-drive", cd_file]),
    ("undeploy", ["node", "undeploy", "node-1"]),
    ("console-enable", ["node", "console", "enable", "node-1"]),
    ("vif-attach", ["node", "vif", "attach", "node-1", "a5a6a7a8-0000-4000-8000-000000000001"]),
]
env = dict(os.environ)
for k in list(env):
    if k.lower().endswith("_proxy") or k.startswith("OS_"):
        env.pop(k)
for name, args in RUNS:
    current["name"], current["n"] = name, 0
    argv = [BIN, "--os-endpoint", EP, "--os-auth-type", "none",
            "--os-baremetal-api-version", "1.109"] + args
    r = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=60, env=env)
    if r.returncode != 0:
        print("api seeds: %s exited %d: %s" % (name, r.returncode, r.stderr.decode()[-300:]), file=sys.stderr)
srv.shutdown()
import shutil
shutil.rmtree(cd)
n = len([f for f in os.listdir(OUT) if f.endswith(".json")])
print("api seeds: %d request bodies from %d CLI runs" % (n, len(RUNS)))
