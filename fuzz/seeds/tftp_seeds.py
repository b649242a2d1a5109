#!/usr/bin/env python3
"""Record the requests stock TFTP clients send, as seeds.

Usage: tftp_seeds.py OUT_DIR

Listens on a loopback UDP port, runs curl, atftp and tftp-hpa (`tftp`)
against it with the option sets PXE firmware and operators use, saves the
first datagram of each (the RRQ, or WRQ for a put) and answers with ERROR
1 so the client gives up at once. Also saves the ACK/ERROR a client sends
after an OACK (the listener answers one request of each client with an
OACK to see them).
"""
import os
import socket
import subprocess
import sys
import threading

OUT = sys.argv[1]
os.makedirs(OUT, exist_ok=True)

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind(("127.0.0.1", 0))
PORT = sock.getsockname()[1]
saved = []
state = {"name": None, "oack": False, "n": 0}
lock = threading.Lock()


def listener():
    while True:
        try:
            data, peer = sock.recvfrom(65536)
        except OSError:
            return
        with lock:
            name = state["name"]
            state["n"] += 1
            n = state["n"]
        if name is None:
            continue
        saved.append((name, n, data))
        with open(os.path.join(OUT, "%s-%02d" % (name, n)), "wb") as f:
            f.write(data)
        op = int.from_bytes(data[:2], "big")
        if op in (1, 2) and state["oack"]:
            # Grant what was asked (echo the options): the client answers
            # with ACK 0 (or an ERROR), which we record too.
            parts = data[2:].split(b"\0")
            opts = parts[2:-1]
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            t.bind(("127.0.0.1", 0))
            t.settimeout(2)
            t.sendto(b"\x00\x06" + b"".join(o + b"\0" for o in opts), peer)
            try:
                reply, _ = t.recvfrom(65536)
                with open(os.path.join(OUT, "%s-%02d-after-oack" % (name, n)), "wb") as f:
                    f.write(reply)
                t.sendto(b"\x00\x05\x00\x01file not found\0", peer)
            except socket.timeout:
                pass
            t.close()
        else:
            sock.sendto(b"\x00\x05\x00\x01file not found\0", peer)


threading.Thread(target=listener, daemon=True).start()

P = str(PORT)
RUNS = [
    ("curl", False, ["curl", "-s", "-o", "/dev/null", "--max-time", "3", "tftp://127.0.0.1:%s/pxelinux.0" % P]),
    ("curl-blksize", True, ["curl", "-s", "-o", "/dev/null", "--max-time", "3", "--tftp-blksize", "1468",
                            "tftp://127.0.0.1:%s/pxelinux.cfg/01-52-54-00-12-34-56" % P]),
    ("curl-no-options", False, ["curl", "-s", "-o", "/dev/null", "--max-time", "3", "--tftp-no-options",
                                "tftp://127.0.0.1:%s/grub/grub.cfg-01-52-54-00-12-34-56" % P]),
    ("atftp", False, ["atftp", "--get", "-r", "ipxe.efi", "-l", "/dev/null", "127.0.0.1", P]),
    ("atftp-options", True, ["atftp", "--get", "-r", "deploy/vmlinuz", "-l", "/dev/null",
                             "--option", "blksize 1428", "--option", "tsize 0",
                             "--option", "timeout 3", "--option", "windowsize 16", "127.0.0.1", P]),
    ("atftp-put", False, ["atftp", "--put", "-r", "upload.bin", "-l", "/etc/hostname", "127.0.0.1", P]),
    ("tftp-hpa", False, ["tftp", "-m", "binary", "127.0.0.1", P, "-c", "get", "boot.ipxe", "/dev/null"]),
    ("tftp-hpa-netascii", False, ["tftp", "-m", "ascii", "127.0.0.1", P, "-c", "get",
                                  "pxelinux.cfg/default", "/dev/null"]),
    ("tftp-hpa-traversal", False, ["tftp", "-m", "binary", "127.0.0.1", P, "-c", "get",
                                   "../../etc/passwd", "/dev/null"]),
]
for name, oack, argv in RUNS:
    with lock:
        state["name"], state["oack"], state["n"] = name, oack, 0
    try:
        subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=8,
                       env=dict(os.environ, PATH=os.environ.get("PATH", "") + ":/usr/sbin:/sbin"))
    except (subprocess.TimeoutExpired, FileNotFoundError) as e:
        print("tftp seeds: %s: %s" % (name, e), file=sys.stderr)
with lock:
    state["name"] = None
print("tftp seeds: %d datagrams from %d client runs" % (len(saved), len(RUNS)))
