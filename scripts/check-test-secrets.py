#!/usr/bin/env python3
"""Search everything a full test run produced for the test passwords.

    scripts/check-test-secrets.py OUTPUT_DIR [LOG...]
    scripts/check-test-secrets.py --self-test

scripts/test.sh runs `cargo test` with IRONRACK_TEST_OUTPUT=OUTPUT_DIR, so
the tests' scratch directories are kept there (tests/common/mod.rs): agent
logs, agent databases and their WAL, console logs, simulator stats, the logs
of ironrack's CLIs and of the peers. LOG is the run's own stdout and stderr
(with --nocapture: everything every test printed).

Every file is searched, as bytes, for each test password in plain text and
in hex, except the inputs a test wrote itself (the password files and
configs it hands to ironrack or a peer), which each scratch directory lists
in `.inputs`, and the peers' own state under an `.inputs` entry ending in
`/`. Exit 1 with every hit (file, line, a short excerpt) when any is found,
or when the run left nothing to search (no agent log or no database: the
check would prove nothing).
"""

import os
import sys
import tempfile

# Every password the tests give ironrack or a peer (tests/common/mod.rs
# PASSWORD, and the few tests with their own). Each must still appear in
# tests/, so the list cannot rot silently.
SECRETS = [
    "ironrack-test-pw",
    "s3cret-pw",
    "rf-test-pw",
    "op-secret-1",
    "rf-pw",
]
# The run must have left at least this many of each, or it searched nothing.
NEEDED = {"agent logs": ("agent.log", 1), "agent databases": (".db", 1)}


def patterns():
    out = []
    for s in SECRETS:
        out.append((s, s.encode()))
        out.append((s + " (hex)", s.encode().hex().encode()))
    return out


def inputs_of(scratch):
    """The inputs a scratch directory lists: files, and directories (`x/`)."""
    try:
        with open(os.path.join(scratch, ".inputs"), encoding="utf-8") as f:
            names = [l.strip() for l in f if l.strip()]
    except OSError:
        return set(), []
    return {n for n in names if not n.endswith("/")}, [n for n in names if n.endswith("/")]


def excerpt(data, at, secret_len):
    start = data.rfind(b"\n", 0, at) + 1
    end = data.find(b"\n", at + secret_len)
    end = len(data) if end < 0 else end
    line_no = data.count(b"\n", 0, at) + 1
    line = data[start:end]
    if len(line) > 200:
        off = at - start
        line = line[max(0, off - 80) : off + secret_len + 80]
    return line_no, line.decode("utf-8", "replace")


def search(path, pats, hits):
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        # A socket or a file gone while walking: nothing to read.
        if os.path.exists(path) and os.path.isfile(path):
            hits.append((path, 0, "(unreadable)", str(e)))
        return
    for name, pat in pats:
        at = data.find(pat)
        if at >= 0:
            line_no, line = excerpt(data, at, len(pat))
            hits.append((path, line_no, name, line))


def check(out_dir, logs):
    pats = patterns()
    hits = []
    counts = {k: 0 for k in NEEDED}
    searched = 0
    skipped = 0
    for scratch in sorted(os.listdir(out_dir)):
        top = os.path.join(out_dir, scratch)
        if not os.path.isdir(top):
            search(top, pats, hits)
            searched += 1
            continue
        files, dirs = inputs_of(top)
        for root, _, names in os.walk(top):
            for n in names:
                p = os.path.join(root, n)
                rel = os.path.relpath(p, top)
                if n == ".inputs" or rel in files or any(rel.startswith(d) for d in dirs):
                    skipped += 1
                    continue
                if os.path.islink(p) or not os.path.isfile(p):
                    continue
                for what, (suffix, _) in NEEDED.items():
                    if n.endswith(suffix):
                        counts[what] += 1
                search(p, pats, hits)
                searched += 1
    for log in logs:
        search(log, pats, hits)
        searched += 1
    print(
        f"check-test-secrets: {searched} files searched for {len(SECRETS)} test passwords "
        f"(plain and hex), {skipped} test inputs skipped; "
        + ", ".join(f"{v} {k}" for k, v in counts.items())
    )
    ok = True
    for what, (_, need) in NEEDED.items():
        if counts[what] < need:
            print(f"check-test-secrets: FAIL: only {counts[what]} {what}: nothing to prove")
            ok = False
    for path, line_no, name, line in hits:
        print(f"check-test-secrets: FAIL: {path}:{line_no}: {name}: {line}")
        ok = False
    return ok


def check_list_is_current():
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    text = ""
    tests = os.path.join(repo, "tests")
    for root, _, names in os.walk(tests):
        for n in names:
            if n.endswith(".rs"):
                with open(os.path.join(root, n), encoding="utf-8") as f:
                    text += f.read()
    stale = [s for s in SECRETS if f'"{s}"' not in text]
    if stale:
        print(f"check-test-secrets: FAIL: no test uses {stale} any more: update SECRETS")
    return not stale


def self_test():
    """The check finds a planted password and skips declared inputs."""
    with tempfile.TemporaryDirectory() as d:
        s = os.path.join(d, "ironrack-agent-1-2")
        os.makedirs(os.path.join(s, "state"))
        with open(os.path.join(s, ".inputs"), "w") as f:
            f.write("pw\nstate/\n")
        for name, body in [
            ("pw", SECRETS[0]),
            ("state/lan.conf", f"user 2 true admin {SECRETS[0]}"),
            ("agent.log", "INFO power on\n"),
            ("ironrack.db", "sealed"),
        ]:
            with open(os.path.join(s, name), "w") as f:
                f.write(body)
        if not check(d, []):
            print("check-test-secrets: self-test FAILED: a clean output was refused")
            return False
        with open(os.path.join(s, "agent.log"), "a") as f:
            f.write(f"DEBUG body {{'ipmi_password': '{SECRETS[1].encode().hex()}'}}\n")
        if check(d, []):
            print("check-test-secrets: self-test FAILED: a planted password was not found")
            return False
        os.remove(os.path.join(s, "ironrack.db"))
        with open(os.path.join(s, "agent.log"), "w") as f:
            f.write("clean\n")
        if check(d, []):
            print("check-test-secrets: self-test FAILED: a run without a database passed")
            return False
    print("check-test-secrets: self-test passed (the hits above were planted)")
    return True


def main():
    args = sys.argv[1:]
    if args == ["--self-test"]:
        return 0 if self_test() else 1
    if not args or args[0].startswith("-"):
        print(__doc__)
        return 2
    ok = check_list_is_current()
    ok = check(args[0], args[1:]) and ok
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
