#!/usr/bin/env python3
"""Wait until an IPMI BMC (e.g. ipmi_sim) answers on UDP, without a session.

    scripts/ipmi-sim-ready.py PORT [--host 127.0.0.1] [--timeout 10]

Sends the pre-session IPMI v1.5 "Get Channel Authentication Capabilities"
request (channel 0Eh, IPMI v2.0 extended data, ADMIN) every 200 ms and exits 0
on the first well-formed reply, 1 on timeout.  Opens no session, so it does not
use up any of the BMC's session slots and needs no credentials.

Request bytes (23):
  06 00 ff 07                  RMCP v1.0, seq ff (no ACK), class IPMI
  00 00000000 00000000 09      IPMI v1.5 session hdr: auth NONE, seq 0, sid 0, len 9
  20 18 c8 81 00 38 8e 04 b5   rsAddr 20, netFn 06 (App) LUN 0, csum, rqAddr 81,
                               rqSeq 0, cmd 38, data 8e 04, csum
"""

import argparse
import socket
import sys
import time

GET_CHAN_AUTH_CAP = bytes.fromhex("0600ff07" "00" "00000000" "00000000" "09"
                                  "2018c881" "00" "38" "8e04" "b5")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--timeout", type=float, default=10.0)
    a = ap.parse_args()
    deadline = time.monotonic() + a.timeout
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            s.sendto(GET_CHAN_AUTH_CAP, (a.host, a.port))
            data, _ = s.recvfrom(512)
            # RMCP hdr + v1.5 session hdr (10) + rqAddr netFn ... cmd 38 cc 00
            if len(data) >= 21 and data[:4] == b"\x06\x00\xff\x07" and data[19] == 0x38:
                return 0
        except (socket.timeout, ConnectionRefusedError):
            pass
        time.sleep(0.05)
    print("ipmi-sim-ready: no answer from %s:%d within %.1fs" % (a.host, a.port, a.timeout),
          file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
