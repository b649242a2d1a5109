#!/usr/bin/env python3
"""Decode an IPMI-over-LAN capture written by scripts/udp-capture.py.

    scripts/ipmi-decode-capture.py CAPTURE.txt [--password PW] [--username U]

Input: lines "C>S <hex>" / "S>C <hex>" (full UDP payloads); '#' lines are
comments.  "# password: ..." / "# username: ..." header comments supply the
credentials unless given on the command line (test vectors only!).

For every datagram this prints the RMCP header, the IPMI v1.5 session header
or the RMCP+ (IPMI v2.0) session header, and decodes:
  * Get Channel Authentication Capabilities / Get Channel Cipher Suites and
    other session-less IPMI messages,
  * RMCP+ Open Session Request/Response, RAKP 1/2/3/4,
  * authenticated/encrypted session messages, IPMI and SOL (cipher suites 1..3: RAKP-HMAC-
    SHA1, HMAC-SHA1-96, AES-CBC-128), after verifying the RAKP2/RAKP3/RAKP4
    HMACs and deriving SIK/K1/K2 from the password.
For RAKP2 it reports which ROLE byte value makes the BMC's key exchange
authentication code verify:
  HMAC_K(SIDm | SIDc | Rm | Rc | GUIDc | ROLE | ULEN | UNAME),
  K = password zero-padded to 20 bytes.

AES uses the 'cryptography' package if importable (e.g. .venv/bin/python),
else the openssl CLI.  Python 3.8+.
"""

import argparse
import hashlib
import hmac
import subprocess
import sys

PRIV = {0: "HIGHEST(0)", 1: "CALLBACK", 2: "USER", 3: "OPERATOR", 4: "ADMIN", 5: "OEM"}
PAYLOAD = {
    0x00: "IPMI message", 0x01: "SOL", 0x02: "OEM explicit",
    0x10: "Open Session Request", 0x11: "Open Session Response",
    0x12: "RAKP Message 1", 0x13: "RAKP Message 2",
    0x14: "RAKP Message 3", 0x15: "RAKP Message 4",
}
RMCPP_STATUS = {
    0x00: "no errors", 0x01: "insufficient resources", 0x02: "invalid session id",
    0x03: "invalid payload type", 0x04: "invalid authentication algorithm",
    0x05: "invalid integrity algorithm", 0x06: "no matching authentication payload",
    0x07: "no matching integrity payload", 0x08: "inactive session id",
    0x09: "invalid role", 0x0a: "unauthorized role or privilege level requested",
    0x0b: "insufficient resources for role", 0x0c: "invalid name length",
    0x0d: "unauthorized name", 0x0e: "unauthorized GUID", 0x0f: "invalid integrity check value",
    0x10: "invalid confidentiality algorithm", 0x11: "no cipher suite match",
    0x12: "illegal or unrecognized parameter",
}
CMDS = {
    (0x06, 0x01): "Get Device ID", (0x06, 0x37): "Get System GUID",
    (0x06, 0x38): "Get Channel Authentication Capabilities",
    (0x06, 0x39): "Get Session Challenge", (0x06, 0x3a): "Activate Session",
    (0x06, 0x3b): "Set Session Privilege Level", (0x06, 0x3c): "Close Session",
    (0x06, 0x48): "Activate Payload", (0x06, 0x49): "Deactivate Payload",
    (0x06, 0x4a): "Get Payload Activation Status",
    (0x06, 0x54): "Get Channel Cipher Suites",
    (0x00, 0x01): "Get Chassis Status", (0x00, 0x02): "Chassis Control",
    (0x00, 0x04): "Chassis Identify",
    (0x00, 0x08): "Set System Boot Options", (0x00, 0x09): "Get System Boot Options",
    (0x2c, 0x00): "Group Extension cmd 00h (PICMG/VSO Get Properties probe)",
    (0x2c, 0x3e): "PICMG Get HPM.x Capabilities",
}


def u32(b, o=0):
    return int.from_bytes(b[o:o + 4], "little")


def hexs(b):
    return b.hex()


def aes_cbc_decrypt(key, iv, data):
    try:
        from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
        d = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
        return d.update(data) + d.finalize()
    except ImportError:
        r = subprocess.run(
            ["openssl", "enc", "-d", "-aes-128-cbc", "-nopad", "-K", key.hex(), "-iv", iv.hex()],
            input=data, stdout=subprocess.PIPE, check=True)
        return r.stdout


class Session:
    def __init__(self):
        self.req_priv = None
        self.console_sid = None
        self.bmc_sid = None
        self.auth = self.integ = self.conf = None
        self.rm = self.rc = self.guid = None
        self.role = None
        self.uname = b""
        self.sik = self.k1 = self.k2 = None


class Decoder:
    def __init__(self, password, username):
        self.pw = password.encode() if password is not None else None
        self.username = username
        self.s = Session()
        self.n = 0

    def out(self, text=""):
        print(text)

    # ---- IPMI message (LAN format) ------------------------------------
    def ipmi_msg(self, m, direction, indent="    "):
        if len(m) < 7:
            self.out(indent + "IPMI msg too short: " + hexs(m))
            return
        if direction == "C>S":
            rs, nl, c1, rq, sq, cmd = m[0], m[1], m[2], m[3], m[4], m[5]
            netfn = nl >> 2
            data = m[6:-1]
            name = CMDS.get((netfn & 0xfe, cmd), "?")
            self.out(indent + "IPMI request rsAddr=%02x netFn=%02x lun=%d csum1=%02x rqAddr=%02x "
                     "rqSeq=%02x cmd=%02x (%s) data=[%s] csum2=%02x" % (
                         rs, netfn, nl & 3, c1, rq, sq >> 2, cmd, name, hexs(data), m[-1]))
            if (netfn, cmd) == (0x06, 0x38) and len(data) >= 2:
                self.out(indent + "  GetChAuthCap: byte0=%02x (chan=%x, IPMI v2.0 ext data=%d) "
                         "byte1=%02x (max priv %s)" % (
                             data[0], data[0] & 0xf, data[0] >> 7, data[1], PRIV.get(data[1] & 0xf)))
            if (netfn, cmd) == (0x06, 0x54) and len(data) >= 3:
                self.out(indent + "  GetChCipherSuites: chan=%x payload_type=%02x list_index=%d "
                         "list_algorithms_by_cipher_suite=%d" % (
                             data[0] & 0xf, data[1], data[2] & 0x3f, data[2] >> 7))
            if (netfn, cmd) == (0x00, 0x02) and data:
                self.out(indent + "  ChassisControl: %s" % {
                    0: "power down", 1: "power up", 2: "power cycle", 3: "hard reset",
                    4: "pulse diagnostic interrupt (NMI)", 5: "soft shutdown"}.get(data[0] & 0xf, "?"))
            if (netfn, cmd) == (0x06, 0x3b) and data:
                self.out(indent + "  SetSessionPriv: requested %s" % PRIV.get(data[0] & 0xf))
        else:
            rq, nl, c1, rs, sq, cmd = m[0], m[1], m[2], m[3], m[4], m[5]
            netfn = nl >> 2
            cc = m[6] if len(m) > 7 else None
            data = m[7:-1]
            name = CMDS.get((netfn & 0xfe, cmd), "?")
            self.out(indent + "IPMI response rqAddr=%02x netFn=%02x lun=%d csum1=%02x rsAddr=%02x "
                     "rqSeq=%02x cmd=%02x (%s) cc=%02x data=[%s] csum2=%02x" % (
                         rq, netfn, nl & 3, c1, rs, sq >> 2, cmd, name,
                         cc if cc is not None else 0xff, hexs(data), m[-1]))
            if (netfn & 0xfe, cmd) == (0x06, 0x38) and cc == 0 and len(data) >= 8:
                self.out(indent + "  GetChAuthCap rsp: chan=%d authtypes=%02x (v2.0 ext=%d) "
                         "flags=%02x ext_caps=%02x (1.5=%d 2.0=%d) oem=%s aux=%02x" % (
                             data[0], data[1], data[1] >> 7, data[2], data[3],
                             data[3] & 1, (data[3] >> 1) & 1, hexs(data[4:7]), data[7]))
            if (netfn & 0xfe, cmd) == (0x00, 0x01) and cc == 0 and data:
                self.out(indent + "  ChassisStatus: power %s" % ("on" if data[0] & 1 else "off"))

    # ---- RMCP+ session-setup payloads -----------------------------------
    def open_session_req(self, p):
        s = self.s = Session()
        s.req_priv = p[1]
        s.console_sid = u32(p, 4)
        s.auth, s.integ, s.conf = p[12] & 0x3f, p[20] & 0x3f, p[28] & 0x3f
        self.out("    tag=%02x requested_max_priv=%02x (%s) console_sid(SIDm)=%08x "
                 "auth_alg=%d integ_alg=%d conf_alg=%d" % (
                     p[0], p[1], PRIV.get(p[1] & 0xf, "?"), s.console_sid, s.auth, s.integ, s.conf))

    def open_session_rsp(self, p):
        s = self.s
        if len(p) < 8 or p[1] != 0:
            self.out("    tag=%02x STATUS=%02x (%s)%s" % (
                p[0], p[1], RMCPP_STATUS.get(p[1], "?"),
                (" console_sid=%08x" % u32(p, 4)) if len(p) >= 8 else " (short error payload, %d bytes)" % len(p)))
            return
        s.bmc_sid = u32(p, 8)
        self.out("    tag=%02x status=00 max_priv=%02x (%s) console_sid=%08x bmc_sid(SIDc)=%08x "
                 "auth_alg=%d integ_alg=%d conf_alg=%d" % (
                     p[0], p[2], PRIV.get(p[2] & 0xf, "?"), u32(p, 4), s.bmc_sid,
                     p[16] & 0x3f, p[24] & 0x3f, p[32] & 0x3f))

    def rakp1(self, p):
        s = self.s
        s.rm = p[8:24]
        s.role = p[24]
        ulen = p[27]
        s.uname = p[28:28 + ulen]
        self.out("    tag=%02x bmc_sid=%08x Rm=%s ROLE=%02x (priv %s, name-only lookup bit 0x10=%d) "
                 "ulen=%d uname=%r" % (p[0], u32(p, 4), hexs(s.rm), s.role,
                                       PRIV.get(s.role & 0xf, "?"), (s.role >> 4) & 1, ulen,
                                       s.uname.decode(errors="replace")))

    def rakp2(self, p):
        s = self.s
        if p[1] != 0:
            self.out("    tag=%02x STATUS=%02x (%s)" % (p[0], p[1], RMCPP_STATUS.get(p[1], "?")))
            return
        s.rc, s.guid = p[8:24], p[24:40]
        code = p[40:]
        self.out("    tag=%02x status=00 console_sid=%08x Rc=%s GUIDc=%s auth_code=%s" % (
            p[0], u32(p, 4), hexs(s.rc), hexs(s.guid), hexs(code)))
        if self.pw is None or s.auth != 1:
            return
        k = self.pw.ljust(20, b"\0")[:20]
        cands = []
        for r in [s.role, s.role & 0x0f, s.req_priv, (s.req_priv or 0) | 0x10, 0x00, 0x14, 0x04]:
            if r is not None and r not in cands:
                cands.append(r)
        match = None
        for r in cands:
            msg = (s.console_sid.to_bytes(4, "little") + s.bmc_sid.to_bytes(4, "little") +
                   s.rm + s.rc + s.guid + bytes([r, len(s.uname)]) + s.uname)
            mac = hmac.new(k, msg, hashlib.sha1).digest()
            ok = hmac.compare_digest(mac, code)
            self.out("    RAKP2 HMAC-SHA1 with ROLE=%02x -> %s %s" % (r, hexs(mac), "MATCH" if ok else "no"))
            if ok and match is None:
                match = r
        if match is None:
            self.out("    RAKP2: no candidate ROLE matched (wrong password?)")
            return
        s.sik = hmac.new(k, s.rm + s.rc + bytes([match, len(s.uname)]) + s.uname, hashlib.sha1).digest()
        s.k1 = hmac.new(s.sik, b"\x01" * 20, hashlib.sha1).digest()
        s.k2 = hmac.new(s.sik, b"\x02" * 20, hashlib.sha1).digest()
        s.role = match
        self.out("    SIK=%s K1=%s K2=%s" % (hexs(s.sik), hexs(s.k1), hexs(s.k2)))

    def rakp3(self, p):
        s = self.s
        code = p[8:]
        self.out("    tag=%02x status=%02x bmc_sid=%08x auth_code=%s" % (p[0], p[1], u32(p, 4), hexs(code)))
        if self.pw is not None and s.rc is not None and code:
            k = self.pw.ljust(20, b"\0")[:20]
            mac = hmac.new(k, s.rc + s.console_sid.to_bytes(4, "little") +
                           bytes([s.role, len(s.uname)]) + s.uname, hashlib.sha1).digest()
            self.out("    RAKP3 HMAC_K(Rc|SIDm|ROLE=%02x|ULEN|UNAME) %s" % (
                s.role, "MATCH" if hmac.compare_digest(mac, code) else "MISMATCH " + hexs(mac)))

    def rakp4(self, p):
        s = self.s
        self.out("    tag=%02x status=%02x (%s) console_sid=%08x icv=%s" % (
            p[0], p[1], RMCPP_STATUS.get(p[1], "?"), u32(p, 4), hexs(p[8:])))
        if s.sik is not None and p[1] == 0:
            mac = hmac.new(s.sik, s.rm + s.bmc_sid.to_bytes(4, "little") + s.guid, hashlib.sha1).digest()[:12]
            self.out("    RAKP4 HMAC_SIK(Rm|SIDc|GUIDc)[:12] %s" % (
                "MATCH" if hmac.compare_digest(mac, p[8:]) else "MISMATCH " + hexs(mac)))

    # ---- datagram -------------------------------------------------------
    def datagram(self, direction, raw):
        self.n += 1
        self.out("#%d %s (%d bytes) %s" % (self.n, direction, len(raw), hexs(raw)))
        if len(raw) < 4:
            self.out("    short datagram")
            return
        ver, _res, seq, cls = raw[0], raw[1], raw[2], raw[3]
        self.out("    RMCP version=%02x seq=%02x class=%02x (%s)" % (
            ver, seq, cls, {0x06: "ASF", 0x07: "IPMI"}.get(cls & 0x7f, "?")))
        if cls & 0x7f != 0x07:
            return
        b = raw[4:]
        authtype = b[0]
        if authtype != 0x06:
            sseq, sid = u32(b, 1), u32(b, 5)
            o = 9
            code = b""
            if authtype != 0:
                code = b[o:o + 16]
                o += 16
            ln = b[o]
            msg = b[o + 1:o + 1 + ln]
            self.out("    IPMI v1.5 session hdr: authtype=%02x seq=%08x sid=%08x%s len=%d" % (
                authtype, sseq, sid, (" authcode=" + hexs(code)) if code else "", ln))
            self.ipmi_msg(msg, direction)
            return
        ptype = b[1]
        o = 2
        if ptype & 0x3f == 0x02:
            o += 6
        sid, sseq, ln = u32(b, o), u32(b, o + 4), int.from_bytes(b[o + 8:o + 10], "little")
        o += 10
        payload = b[o:o + ln]
        enc, auth = ptype >> 7, (ptype >> 6) & 1
        pt = ptype & 0x3f
        self.out("    RMCP+ session hdr: authtype=06 payload_type=%02x (%s, encrypted=%d, "
                 "authenticated=%d) sid=%08x seq=%08x payload_len=%d" % (
                     ptype, PAYLOAD.get(pt, "?"), enc, auth, sid, sseq, ln))
        if auth:
            trailer = b[o + ln:]
            s = self.s
            if s.k1 is not None:
                # pad (0xff..) | pad_len | next_header(07) | auth code (12 bytes, HMAC-SHA1-96)
                icv = trailer[-12:]
                covered = b[:len(b) - 12]
                mac = hmac.new(s.k1, covered, hashlib.sha1).digest()[:12]
                self.out("    integrity trailer=%s HMAC-SHA1-96(K1) %s" % (
                    hexs(trailer), "OK" if hmac.compare_digest(mac, icv) else "BAD"))
            else:
                self.out("    integrity trailer=%s (no keys)" % hexs(trailer))
        if pt == 0x10:
            self.open_session_req(payload)
        elif pt == 0x11:
            self.open_session_rsp(payload)
        elif pt == 0x12:
            self.rakp1(payload)
        elif pt == 0x13:
            self.rakp2(payload)
        elif pt == 0x14:
            self.rakp3(payload)
        elif pt == 0x15:
            self.rakp4(payload)
        elif pt in (0x00, 0x01):
            if enc:
                s = self.s
                if s.k2 is None or len(payload) < 32:
                    self.out("    encrypted payload, no keys")
                    return
                clear = aes_cbc_decrypt(s.k2[:16], payload[:16], payload[16:])
                padlen = clear[-1]
                msg = clear[:len(clear) - 1 - padlen]
                self.out("    AES-CBC-128(K2[:16]) IV=%s -> plaintext=%s (conf pad %d)" % (
                    hexs(payload[:16]), hexs(msg), padlen))
            else:
                msg = payload
            if pt == 0x00:
                self.ipmi_msg(msg, direction)
            else:
                self.sol_packet(msg, direction)

    # ---- SOL payload (IPMI v2.0 section 15.9) ---------------------------
    def sol_packet(self, m, direction):
        if len(m) < 4:
            self.out("    SOL: short (%d bytes)" % len(m))
            return
        names = (["nack", "ring/wor", "break", "deassert-cts", "deassert-dcd/dsr",
                  "flush-in", "flush-out"] if direction == "C>S" else
                 ["nack", "xfer-unavailable", "deactivating", "overrun", "break", "-", "-"])
        flags = [n for i, n in enumerate(names) if m[3] & (0x40 >> i)]
        data = m[4:]
        self.out("    SOL seq=%d ack=%d accepted=%d flags=%02x%s data(%d)=%r" % (
            m[0] & 15, m[1] & 15, m[2], m[3], (" " + ",".join(flags)) if flags else "",
            len(data), bytes(data[:60]) + (b"..." if len(data) > 60 else b"")))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("capture")
    ap.add_argument("--password")
    ap.add_argument("--username")
    a = ap.parse_args()
    lines = open(a.capture, encoding="ascii").read().splitlines()
    pw, user = a.password, a.username
    for ln in lines:
        if ln.startswith("# password:") and pw is None:
            pw = ln.split(":", 1)[1].strip()
        if ln.startswith("# username:") and user is None:
            user = ln.split(":", 1)[1].strip()
    d = Decoder(pw, user)
    for ln in lines:
        ln = ln.strip()
        if not ln or ln.startswith("#"):
            continue
        direction, hx = ln.split(None, 1)
        d.datagram(direction, bytes.fromhex(hx.strip()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
