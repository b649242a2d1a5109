#!/usr/bin/env python3
"""Tiny UDP relay that records every datagram as hex (for IPMI byte vectors).

    scripts/udp-capture.py LISTEN_PORT TARGET_PORT OUTFILE [options]

Listens on 127.0.0.1:LISTEN_PORT, forwards each client datagram to
127.0.0.1:TARGET_PORT from a per-client upstream socket, relays the replies
back to that client, and appends one line per datagram to OUTFILE:

    C>S 0600ff07...     client -> server (request)
    S>C 0600ff07...     server -> client (response)

Lines starting with '#' are comments (see --comment).  If more than one client
address talks through the relay, a "# client N: host:port" comment is written
the first time each one is seen.

Exits 0 after --idle seconds without any datagram (the timer starts when the
relay is bound), or on SIGTERM/SIGINT.  Prints "READY <port>" to stderr once
bound, so callers can wait for it before starting the client.

Python 3.8+, stdlib only.
"""

import argparse
import selectors
import signal
import socket
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="UDP relay that logs datagrams as 'C>S <hex>' / 'S>C <hex>' lines")
    p.add_argument("listen_port", type=int, help="port to listen on (127.0.0.1)")
    p.add_argument("target_port", type=int, help="server port to forward to (127.0.0.1)")
    p.add_argument("outfile", help="capture file to write ('-' for stdout)")
    p.add_argument("--listen-host", default="127.0.0.1")
    p.add_argument("--target-host", default="127.0.0.1")
    p.add_argument("--idle", type=float, default=5.0,
                   help="exit after this many seconds without traffic (default 5)")
    p.add_argument("--comment", action="append", default=[],
                   help="header comment line (repeatable); written as '# TEXT'")
    p.add_argument("--append", action="store_true", help="append instead of truncating OUTFILE")
    p.add_argument("--drop-server-replies", action="store_true",
                   help="record but do not forward S>C datagrams (tests client retries)")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    target = (args.target_host, args.target_port)

    if args.outfile == "-":
        out = sys.stdout
    else:
        out = open(args.outfile, "a" if args.append else "w", encoding="ascii")

    def emit(line):
        out.write(line + "\n")
        out.flush()

    for c in args.comment:
        for part in c.splitlines() or [""]:
            emit(("# " + part).rstrip())

    sel = selectors.DefaultSelector()
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((args.listen_host, args.listen_port))
    listener.setblocking(False)
    sel.register(listener, selectors.EVENT_READ, None)

    upstreams = {}  # client addr -> upstream socket
    stop = {"flag": False}

    def on_signal(signum, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    print("READY %d" % listener.getsockname()[1], file=sys.stderr, flush=True)
    last = time.monotonic()

    while not stop["flag"]:
        remaining = args.idle - (time.monotonic() - last)
        if remaining <= 0:
            break
        for key, _ in sel.select(timeout=min(remaining, 0.5)):
            sock = key.fileobj
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                continue
            except ConnectionRefusedError:
                # ICMP port unreachable from the server: nothing to relay
                continue
            last = time.monotonic()
            if sock is listener:
                up = upstreams.get(addr)
                if up is None:
                    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                    up.connect(target)
                    up.setblocking(False)
                    upstreams[addr] = up
                    sel.register(up, selectors.EVENT_READ, addr)
                    if len(upstreams) > 1:
                        emit("# client %d: %s:%d" % (len(upstreams), addr[0], addr[1]))
                emit("C>S " + data.hex())
                try:
                    up.send(data)
                except ConnectionRefusedError:
                    pass
            else:
                client = key.data
                emit("S>C " + data.hex())
                if not args.drop_server_replies:
                    listener.sendto(data, client)

    for up in upstreams.values():
        up.close()
    listener.close()
    if out is not sys.stdout:
        out.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
