#!/usr/bin/env python3
"""Crawl a running Redfish service and write each JSON body as a seed.

Usage: redfish_seeds.py BASE_URL OUT_DIR [MAX_DOCS]

From the service root, follows every "@odata.id" link (breadth first, at
most MAX_DOCS documents, default 120), then provokes error bodies: an
unknown resource (404), a Reset with a ResetType the service refuses, a
PATCH of Boot with an unknown target, a POST to a collection that takes
none. Every answer body is written as <OUT_DIR>/<name>.json.
"""
import json
import os
import re
import sys
import urllib.error
import urllib.request


def req(method, url, body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(url, data=data, method=method,
                               headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(r, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def links(doc):
    out = []
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "@odata.id" and isinstance(v, str):
                out.append(v)
            else:
                out.extend(links(v))
    elif isinstance(doc, list):
        for v in doc:
            out.extend(links(v))
    return out


def name_of(path):
    n = re.sub(r"[^A-Za-z0-9]+", "-", path.strip("/")).strip("-")
    return n[:80] or "root"


def main():
    base, out = sys.argv[1].rstrip("/"), sys.argv[2]
    limit = int(sys.argv[3]) if len(sys.argv) > 3 else 120
    os.makedirs(out, exist_ok=True)
    seen, queue, docs = set(), ["/redfish/v1/"], {}
    while queue and len(docs) < limit:
        path = queue.pop(0)
        key = path.rstrip("/")
        if key in seen or not path.startswith("/redfish/v1"):
            continue
        seen.add(key)
        status, body = req("GET", base + path)
        if status != 200:
            continue
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        docs[path] = doc
        with open(os.path.join(out, name_of(path) + ".json"), "wb") as f:
            f.write(body)
        queue.extend(l for l in links(doc) if l.rstrip("/") not in seen)

    errors = []
    errors.append(("GET", "/redfish/v1/Systems/no-such-system", None))
    systems = [p for p, d in docs.items()
               if isinstance(d, dict) and str(d.get("@odata.type", "")).startswith("#ComputerSystem.")]
    for p in systems[:2]:
        d = docs[p]
        target = (d.get("Actions", {}).get("#ComputerSystem.Reset", {}) or {}).get("target")
        if target:
            errors.append(("POST", target, {"ResetType": "FancyOEMReset"}))
            errors.append(("POST", target, {}))
        errors.append(("PATCH", p, {"Boot": {"BootSourceOverrideTarget": "NoSuchDevice"}}))
        errors.append(("PATCH", p, {"Boot": {"BootSourceOverrideEnabled": "Sometimes"}}))
    errors.append(("POST", "/redfish/v1/Systems", {"Name": "x"}))
    for i, (method, path, body) in enumerate(errors):
        status, rbody = req(method, base + path, body)
        if rbody.strip():
            with open(os.path.join(out, "error-%02d-%d-%s.json" % (i, status, name_of(path))), "wb") as f:
                f.write(rbody)
    print("redfish seeds: %d documents, %d error probes" % (len(docs), len(errors)))


if __name__ == "__main__":
    main()
