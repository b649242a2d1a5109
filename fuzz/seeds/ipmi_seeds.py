#!/usr/bin/env python3
"""Write IPMI seed corpora from the captures in tests/vectors/.

Usage: ipmi_seeds.py REPO OUT_DIR

* rmcp_decode/: every datagram, both directions, as captured.
* rakp/: the Open Session / RAKP payloads (RMCP+ header stripped).
* sim_bmc/: per capture, the client's datagrams in order (framed records,
  op 0 = raw datagram to the BMC), plus sessions driven through our own
  client with the commands the captures carry (op 1) and SOL (ops 2, 4).
* ipmi_client/: per capture, the BMC's datagrams in order (op 0), plus the
  same commands submitted (op 5) with real answers delivered (op 1).
* sol/: the decrypted SOL payloads of the `ipmitool sol activate`
  capture (raw, for the codec), and framed endpoint sessions carrying the
  captured host output and keystrokes.

Framing (fuzz/src/lib.rs): op byte, u16 LE length, bytes.
"""
import importlib.util
import os
import struct
import sys


def frame(records):
    out = b""
    for op, data in records:
        out += bytes([op]) + struct.pack("<H", len(data)) + data
    return out


def load_captures(repo):
    d = os.path.join(repo, "tests", "vectors")
    caps = {}
    for name in sorted(os.listdir(d)):
        if not name.endswith(".txt"):
            continue
        dgrams = []
        for ln in open(os.path.join(d, name), encoding="ascii"):
            ln = ln.strip()
            if ln.startswith("C>S ") or ln.startswith("S>C "):
                direction, hx = ln.split(None, 1)
                dgrams.append((direction, bytes.fromhex(hx.replace(" ", ""))))
        caps[name[:-4]] = dgrams
    return caps


def decrypted_sol(repo):
    """(direction, plaintext SOL payload) of the sol activate capture, using
    scripts/ipmi-decode-capture.py's decoder (it derives the session keys
    from the capture's password)."""
    path = os.path.join(repo, "scripts", "ipmi-decode-capture.py")
    spec = importlib.util.spec_from_file_location("ipmi_decode_capture", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    got = []

    class D(mod.Decoder):
        def out(self, text=""):
            pass

        def sol_packet(self, m, direction):
            got.append((direction, bytes(m)))

    cap = os.path.join(repo, "tests", "vectors", "ipmitool-c3-sol-activate.txt")
    lines = open(cap, encoding="ascii").read().splitlines()
    pw = user = None
    for ln in lines:
        if ln.startswith("# password:"):
            pw = ln.split(":", 1)[1].strip()
        if ln.startswith("# username:"):
            user = ln.split(":", 1)[1].strip()
    dec = D(pw, user)
    for ln in lines:
        ln = ln.strip()
        if ln.startswith("C>S ") or ln.startswith("S>C "):
            direction, hx = ln.split(None, 1)
            dec.datagram(direction, bytes.fromhex(hx))
    return got


def write(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# Client configs (first record): suite auto/3/17, privilege, quirks.
CFG_AUTO = bytes([0, 0, 0, 0, 60, 60, 1])
CFG_S3 = bytes([1, 0, 0, 10, 60, 60, 2])
CFG_S17 = bytes([2, 0, 1, 0, 196, 196, 3])
CFG_S3_SOL_ECHO = bytes([1, 0, 16, 0, 196, 196, 4])

# Commands seen in the captures: (netfn, cmd, data).
GET_DEVICE_ID = bytes([0x06, 0x01])
CHASSIS_STATUS = bytes([0x00, 0x01])
POWER_ON = bytes([0x00, 0x02, 0x01])
POWER_DIAG = bytes([0x00, 0x02, 0x04])
BOOT_SET_IN_PROGRESS = bytes([0x00, 0x08, 0x00, 0x01])
BOOT_INFO_ACK = bytes([0x00, 0x08, 0x04, 0x01, 0x01])
BOOTDEV_PXE_EFI = bytes([0x00, 0x08, 0x05, 0xE0, 0x04, 0x00, 0x00, 0x00])
GET_BOOTDEV = bytes([0x00, 0x09, 0x05, 0x00, 0x00])
ACTIVATE_SOL = bytes([0x06, 0x48, 0x01, 0x01, 0xC6, 0x00, 0x00, 0x00])
DEACTIVATE_SOL = bytes([0x06, 0x49, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00])
SOL_STATUS = bytes([0x06, 0x4A, 0x01])
SET_PRIV = bytes([0x06, 0x3B, 0x04])
PICMG_PROBE = bytes([0x2C, 0x00, 0x00])
CLOSE = bytes([0x06, 0x3C, 0, 0, 0, 0])


def t(ms):
    return struct.pack("<H", ms)


def main():
    repo, out = sys.argv[1], sys.argv[2]
    caps = load_captures(repo)
    sol = decrypted_sol(repo)
    n = 0
    for name, dgrams in caps.items():
        for i, (direction, d) in enumerate(dgrams):
            write(out, "rmcp_decode", "%s-%03d-%s" % (name, i, "cs" if direction == "C>S" else "sc"), d)
            # RMCP+ session setup payloads for the RAKP target.
            if len(d) >= 16 and d[4] == 0x06 and 0x10 <= (d[5] & 0x3F) <= 0x15:
                ln = d[14] | d[15] << 8
                write(out, "rakp", "%s-%03d-pt%02x" % (name, i, d[5] & 0x3F), d[16:16 + ln])
        cs = [d for (direction, d) in dgrams if direction == "C>S"]
        sc = [d for (direction, d) in dgrams if direction == "S>C"]
        for cfg, tag in ((CFG_S3, "s3"), (CFG_AUTO, "auto")):
            write(out, "sim_bmc", "%s-%s" % (name, tag), frame([(0, cfg)] + [(0, d) for d in cs[:60]]))
            write(out, "ipmi_client", "%s-%s" % (name, tag),
                  frame([(0, cfg), (5, CHASSIS_STATUS)] + [(0, d) for d in sc[:60]]))
        n += 1

    # Sessions driven through our own client: what the captures do.
    scripts = {
        "power-status": [(1, CHASSIS_STATUS), (1, GET_DEVICE_ID)],
        "power-on": [(1, POWER_ON), (3, t(3000)), (1, CHASSIS_STATUS)],
        "power-diag": [(1, POWER_DIAG), (1, PICMG_PROBE)],
        "bootdev": [(1, BOOT_SET_IN_PROGRESS), (1, BOOT_INFO_ACK), (1, BOOTDEV_PXE_EFI), (1, GET_BOOTDEV)],
        "keepalive": [(1, CHASSIS_STATUS), (3, t(30000)), (1, CHASSIS_STATUS), (8, b"\x00"), (1, GET_DEVICE_ID)],
        "replay": [(1, CHASSIS_STATUS), (6, b"\x05"), (6, b"\x06"), (1, SET_PRIV), (1, CLOSE)],
        "mutate": [(1, CHASSIS_STATUS), (5, b"\x10\x00\x01"), (9, b""), (7, b"\x08")],
    }
    sol_plain = [m for (direction, m) in sol]
    host_out = b"".join(m[4:] for (direction, m) in sol if direction == "S>C")[:400]
    keys = b"".join(m[4:] for (direction, m) in sol if direction == "C>S")[:200]
    scripts["sol"] = ([(1, ACTIVATE_SOL), (1, SOL_STATUS), (4, host_out or b"login: ")]
                      + [(2, b"\x00" + m) for m in sol_plain if m[:1] != b"\x00"][:20]
                      + [(3, t(600)), (9, b""), (1, DEACTIVATE_SOL)])
    for cfg, tag in ((CFG_S3, "s3"), (CFG_S17, "s17"), (CFG_S3_SOL_ECHO, "echo")):
        for name, recs in scripts.items():
            write(out, "sim_bmc", "client-%s-%s" % (name, tag), frame([(0, cfg)] + recs))
            # The same commands with the BMC's answers delivered one by one.
            client_recs = []
            for op, data in recs:
                if op == 1:
                    client_recs += [(5, data), (1, b""), (1, b""), (1, b""), (1, b""), (1, b""),
                                    (1, b""), (7, b"")]
                elif op == 3:
                    client_recs.append((6, data))
            write(out, "ipmi_client", "client-%s-%s" % (name, tag),
                  frame([(0, cfg)] + client_recs + [(2, b""), (6, t(700)), (4, b"\x05\x00\x10"), (7, b"")]))

    # SOL: raw payloads for the codec, framed endpoint sessions.
    for i, (direction, m) in enumerate(sol):
        write(out, "sol", "ipmitool-sol-activate-%03d-%s" % (i, "cs" if direction == "C>S" else "sc"), m)
    cfg_ipmi_sim = bytes([28, 3, 100, 0xFF, 0x00, 0x20, 0x00])   # console: 28 chars/packet, BMC buffer 32
    cfg_big = bytes([200, 6, 40, 0xFF, 0xFF, 0xFF, 0xFF])
    for cfg, tag in ((cfg_ipmi_sim, "ipmi-sim"), (cfg_big, "big")):
        bmc_cfg = bytes([255, 6, 100, 0xFF, 0x3F, 0xFF, 0xFF])
        recs = [(0, cfg + bmc_cfg)]
        recs += [(0x80, host_out[:200]), (0x81, b""), (2, b""), (1, b""), (0x82, b""),
                 (0, keys[:60]), (1, b""), (3, b""), (5, t(1500)), (1, b""), (0x82, b""),
                 (4, b""), (0x81, b""), (0x82, b""), (7, b"\x00"), (1, b""), (0x82, b""),
                 (0x87, b"\x08\x01"), (0x81, b""), (2, b""), (5, t(5000))]
        write(out, "sol", "endpoints-%s" % tag, frame(recs))
    print("ipmi seeds: %d captures" % n)


if __name__ == "__main__":
    main()
