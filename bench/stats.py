#!/usr/bin/env python3
"""Timing driver for bench/launch.sh (a benchmark, not a test).

Runs every tool round-robin on the same busybox rootfs, times each launch
with time.perf_counter_ns() (monotonic), checks every launch exits 0, prints
a table and berth's goals, then measures the berth supervisor's RSS.

Normally invoked by bench/launch.sh, which prepares the rootfs, the runc
bundle and the temporary state directories, and cleans everything up.
"""

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

STEP_TIMEOUT_S = 30  # any single command taking longer than this is a failure


class LaunchFailed(Exception):
    pass


def run_step(argv, what):
    """Run one command; return its stdout. Raise LaunchFailed on rc != 0."""
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=STEP_TIMEOUT_S)
    except subprocess.TimeoutExpired as e:
        raise LaunchFailed(f"{what}: timed out after {STEP_TIMEOUT_S}s\n"
                           f"  command: {shlex.join(argv)}\n"
                           f"  stderr: {(e.stderr or b'').decode(errors='replace')}")
    except OSError as e:
        raise LaunchFailed(f"{what}: cannot execute: {e}\n  command: {shlex.join(argv)}")
    if p.returncode != 0:
        raise LaunchFailed(f"{what}: exit status {p.returncode}\n"
                           f"  command: {shlex.join(argv)}\n"
                           f"  stdout: {p.stdout.decode(errors='replace').rstrip()}\n"
                           f"  stderr: {p.stderr.decode(errors='replace').rstrip()}")
    return p.stdout.decode(errors="replace")


class Tool:
    """A launcher under test. launch(tag) runs one full create..delete cycle."""

    def __init__(self, name, launch, note="", optional=False):
        self.name = name
        self._launch = launch
        self.note = note
        self.optional = optional  # a failure drops this row instead of aborting
        self.failure = None       # (round tag, error text) once dropped
        self.samples_ns = []

    def timed(self, tag, record=True):
        t0 = time.perf_counter_ns()
        self._launch(tag)
        dt = time.perf_counter_ns() - t0
        if record:
            self.samples_ns.append(dt)
        return dt


def make_tools(a):
    tools = []
    berth_root = os.path.join(a.tmp, "berth-root")
    runc_root = os.path.join(a.tmp, "runc-root")
    crun_root = os.path.join(a.tmp, "crun-root")
    counters = {"runc_delete": 0, "crun_delete": 0}

    # 1. berth: create+start+wait+delete in one command.
    def berth(tag):
        run_step([a.berth, "--root", berth_root, "launch", "--rm", "--rootfs", a.rootfs,
                  "--", "/bin/true"], f"berth launch --rm [{tag}]")
    tools.append(Tool("berth", berth, "launch --rm"))

    # 1b. berth, detached split form: launch -d, wait, rm.
    if not a.no_split:
        def berth_split(tag):
            cid = run_step([a.berth, "--root", berth_root, "launch", "-d", "--rootfs", a.rootfs,
                            "--", "/bin/true"], f"berth launch -d [{tag}]").strip()
            if not cid or len(cid.split()) != 1:
                raise LaunchFailed(f"berth launch -d [{tag}]: unexpected stdout {cid!r}")
            code = run_step([a.berth, "--root", berth_root, "wait", cid],
                            f"berth wait [{tag}]").strip()
            if code != "0":
                raise LaunchFailed(f"berth wait [{tag}]: container exit code {code!r}, want '0'")
            run_step([a.berth, "--root", berth_root, "rm", cid], f"berth rm [{tag}]")
        tools.append(Tool("berth-split", berth_split, "launch -d + wait + rm", optional=True))

    # 1c. berth run: runc's command line on the very bundle runc runs below
    # (create, start, wait as the subreaper, delete: all in one command).
    def berth_run(tag):
        run_step([a.berth, "--root", berth_root, "run", "--bundle", a.bundle, f"brun-{tag}"],
                 f"berth run [{tag}]")
    tools.append(Tool("berth-run", berth_run, "run --bundle (runc's CLI, same bundle)"))

    # 2. runc run (+ runc delete -f if the container is still there).
    def runc(tag):
        cid = f"bench-{tag}"
        run_step(["runc", "--root", runc_root, "run", "--bundle", a.bundle, cid],
                 f"runc run [{tag}]")
        # runc keeps its state in <root>/<id>; a cheap stand-in for `runc list`.
        if os.path.exists(os.path.join(runc_root, cid)):
            counters["runc_delete"] += 1
            run_step(["runc", "--root", runc_root, "delete", "-f", cid], f"runc delete [{tag}]")
    tools.append(Tool("runc", runc, "run (+delete -f if left)"))

    # optional: crun, only if the probe in launch.sh succeeded; on a hybrid
    # host inside the helper's mount namespace (see launch.sh), entered with
    # nsenter, whose own cost the nsenter row shows.
    if a.crun:
        wrap = ["nsenter", f"--mount={a.crun_mntns}"] if a.crun_mntns else []

        def crun(tag):
            cid = f"cbench-{tag}"
            run_step(wrap + ["crun", "--cgroup-manager=disabled", "--root", crun_root, "run",
                             "--bundle", a.bundle, cid], f"crun run [{tag}]")
            if os.path.exists(os.path.join(crun_root, cid)):
                counters["crun_delete"] += 1
                run_step(wrap + ["crun", "--cgroup-manager=disabled", "--root", crun_root,
                                 "delete", "-f", cid], f"crun delete [{tag}]")
        tools.append(Tool("crun", crun, "run, no cgroup" + (" (via nsenter)" if wrap else ""),
                          optional=True))
        if wrap:
            def nsenter(tag):
                run_step(wrap + ["/bin/true"], f"nsenter [{tag}]")
            tools.append(Tool("nsenter", nsenter, "the crun row's wrapper: nsenter --mount /bin/true",
                              optional=True))

    # 3. bwrap.
    def bwrap(tag):
        run_step(["bwrap", "--unshare-all", "--bind", a.rootfs, "/", "--proc", "/proc",
                  "--dev", "/dev", "/bin/true"], f"bwrap [{tag}]")
    tools.append(Tool("bwrap", bwrap, "--unshare-all"))

    # 4. The floor: bare namespaces + chroot.
    if a.unshare_root:
        floor_argv = ["unshare", "-p", "-f", "-m", "-n", "-u", "-i", f"--root={a.rootfs}",
                      "/bin/true"]
        floor_note = "-pfmnui --root"
    else:
        floor_argv = ["unshare", "-p", "-f", "-m", "-n", "-u", "-i", "chroot", a.rootfs,
                      "/bin/true"]
        floor_note = "-pfmnui chroot"

    def floor(tag):
        run_step(floor_argv, f"unshare [{tag}]")
    tools.append(Tool("unshare", floor, floor_note))
    return tools, counters


def pct(sorted_vals, p):
    """Percentile with linear interpolation between closest ranks."""
    if not sorted_vals:
        return float("nan")
    if len(sorted_vals) == 1:
        return sorted_vals[0]
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def summarize(tool):
    ms = sorted(x / 1e6 for x in tool.samples_ns)
    if not ms:
        return None
    return {"runs": len(ms), "median": statistics.median(ms), "p95": pct(ms, 95),
            "min": ms[0], "max": ms[-1]}


def goal(ok, text):
    print(f"{'PASS' if ok else 'FAIL'}  {text}")


def measure_rss(a):
    berth_root = os.path.join(a.tmp, "berth-root")
    print()
    print("berth supervisor memory (launch -d --rootfs ROOTFS -- /bin/sleep 30):")
    cid = run_step([a.berth, "--root", berth_root, "launch", "-d", "--rootfs", a.rootfs,
                    "--", "/bin/sleep", "30"], "berth launch -d (rss)").strip()
    try:
        doc = json.loads(run_step([a.berth, "--root", berth_root, "inspect", "--json", cid],
                                  "berth inspect --json (rss)"))
        sup = doc.get("supervisor") or {}
        pid = sup.get("pid")
        if not isinstance(pid, int) or pid <= 0:
            raise LaunchFailed(f"berth inspect --json: no supervisor.pid in {sup!r}")
        time.sleep(0.5)
        fields = {}
        try:
            with open(f"/proc/{pid}/status") as f:
                for line in f:
                    k, _, v = line.partition(":")
                    if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                        fields[k] = int(v.split()[0])
        except FileNotFoundError:
            raise LaunchFailed(f"supervisor pid {pid} vanished before /proc/{pid}/status was read")
        # Re-inspect after the settle time for berth's own view.
        doc2 = json.loads(run_step([a.berth, "--root", berth_root, "inspect", "--json", cid],
                                   "berth inspect --json (rss, 2nd)"))
        rss_kib_berth = (doc2.get("supervisor") or {}).get("rss_kib")
        print(f"  supervisor pid {pid}, container {cid[:12]}")
        for k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
            if k in fields:
                print(f"  {k + ':':<10}{fields[k]:>8} KiB")
        print(f"  inspect supervisor.rss_kib: {rss_kib_berth} (at launch: {sup.get('rss_kib')})")
        return fields.get("VmRSS")
    finally:
        run_step([a.berth, "--root", berth_root, "rm", "-f", cid], "berth rm -f (rss)")


def leftovers(a):
    out = []
    for sub in ("berth-root", "runc-root", "crun-root"):
        d = os.path.join(a.tmp, sub)
        if os.path.isdir(d):
            names = [n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n))
                     # berth keeps a names/ index next to its per-id state dirs
                     and not (sub == "berth-root" and n == "names")]
            if names:
                out.append(f"{sub}: {len(names)} state dir(s) left: {', '.join(sorted(names)[:5])}")
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, required=True)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--tmp", required=True)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--bundle", required=True)
    ap.add_argument("--berth", required=True)
    ap.add_argument("--crun", action="store_true")
    ap.add_argument("--crun-mntns", default="",
                    help="mount namespace (/proc/PID/ns/mnt) to run crun in, via nsenter")
    ap.add_argument("--no-split", action="store_true")
    ap.add_argument("--unshare-root", action="store_true")
    ap.add_argument("--raw", action="store_true", help="also print every sample (ms, sorted)")
    ap.add_argument("--max-seconds", type=float, default=1200.0,
                    help="stop measuring (with a warning) after this much wall time")
    a = ap.parse_args()
    if not (1 <= a.runs <= 10000):
        sys.exit("stats.py: --runs must be in 1..10000")

    tools, counters = make_tools(a)
    deadline = time.monotonic() + a.max_seconds

    def attempt(t, tag, record=True):
        if t.failure:
            return
        try:
            t.timed(tag, record)
        except LaunchFailed as e:
            if not t.optional:
                raise
            t.failure = (tag, str(e))
            print(f"\nLAUNCH FAILED ({t.name}, optional row, dropped from here on): {e}\n",
                  file=sys.stderr, flush=True)

    try:
        for w in range(max(0, min(a.warmup, 20))):
            for t in tools:
                attempt(t, f"w{w}", record=False)
        k = len(tools)
        done = 0
        for i in range(a.runs):
            if time.monotonic() > deadline:
                print(f"WARNING: time budget of {a.max_seconds:.0f}s exhausted after "
                      f"{done} of {a.runs} rounds; reporting what was measured", file=sys.stderr)
                break
            # Round-robin, rotating the starting tool each round so no tool
            # always runs right after the same neighbour.
            for t in tools[i % k:] + tools[:i % k]:
                attempt(t, str(i))
            done += 1
            if a.runs >= 20 and (i + 1) % 10 == 0:
                print(f"  ... {i + 1}/{a.runs} rounds", file=sys.stderr, flush=True)
    except LaunchFailed as e:
        print(f"\nLAUNCH FAILED: {e}", file=sys.stderr)
        return 1

    if any(not t.samples_ns for t in tools if not t.optional):
        print("no measured runs (time budget exhausted during warm-up?)", file=sys.stderr)
        return 1
    stats = {t.name: summarize(t) for t in tools}
    runc_med = stats["runc"]["median"]
    floor_med = stats["unshare"]["median"]

    print()
    print(f"Launch latency, /bin/true in a busybox rootfs, {a.warmup} warm-up + "
          f"{stats['berth']['runs']} measured runs per tool, round-robin "
          f"(wall time, perf_counter_ns)")
    hdr = (f"{'tool':<12} {'runs':>5} {'median ms':>10} {'p95 ms':>9} {'min ms':>9} "
           f"{'vs runc':>8} {'vs floor':>9}  what")
    print(hdr)
    print("-" * len(hdr))
    for t in tools:
        s = stats[t.name]
        note = t.note + (f"  [FAILED at run {t.failure[0]}, dropped]" if t.failure else "")
        if s is None:
            print(f"{t.name:<12} {0:>5} {'-':>10} {'-':>9} {'-':>9} {'-':>8} {'-':>9}  {note}")
            continue
        print(f"{t.name:<12} {s['runs']:>5} {s['median']:>10.2f} {s['p95']:>9.2f} "
              f"{s['min']:>9.2f} {s['median'] / runc_med:>7.2f}x {s['median'] / floor_med:>8.2f}x"
              f"  {note}")
    print("(vs runc / vs floor = tool median / runc median, tool median / unshare median)")
    if a.raw:
        for t in tools:
            print(f"raw {t.name}: " + " ".join(f"{x / 1e6:.1f}" for x in sorted(t.samples_ns)))
    if counters["runc_delete"]:
        print(f"note: runc left the container behind {counters['runc_delete']} time(s); "
              f"runc delete -f was timed with it")
    if counters["crun_delete"]:
        print(f"note: crun left the container behind {counters['crun_delete']} time(s)")
    for s in leftovers(a):
        print(f"note: leftover after the timed runs: {s}")
    failed = [t for t in tools if t.failure]
    for t in failed:
        first = t.failure[1].splitlines()
        print(f"note: {t.name} FAILED at run {t.failure[0]}: {first[0]}")
        for line in first[1:]:
            print(f"      {line}")

    try:
        vmrss = measure_rss(a)
    except LaunchFailed as e:
        print(f"\nLAUNCH FAILED (supervisor RSS): {e}", file=sys.stderr)
        vmrss = None

    b = stats["berth"]["median"]
    br = stats["berth-run"]["median"]
    print()
    print("berth goals (informational):")
    goal(b <= 0.5 * runc_med,
         f"berth median <= 0.5 x runc median   ({b:.2f} ms vs limit {0.5 * runc_med:.2f} ms; "
         f"ratio {b / runc_med:.2f})")
    goal(br <= 0.5 * runc_med,
         f"berth-run median <= 0.5 x runc median ({br:.2f} ms vs limit {0.5 * runc_med:.2f} ms; "
         f"ratio {br / runc_med:.2f})")
    crun_s = stats.get("crun")
    if crun_s:
        print(f"info  vs crun (no cgroup{', incl. nsenter' if a.crun_mntns else ''}, "
              f"{crun_s['median']:.2f} ms): berth {b / crun_s['median']:.2f}x, "
              f"berth-run {br / crun_s['median']:.2f}x")
    goal(b <= 1.5 * floor_med,
         f"berth median <= 1.5 x unshare floor ({b:.2f} ms vs limit {1.5 * floor_med:.2f} ms; "
         f"ratio {b / floor_med:.2f})")
    if vmrss is None:
        print("FAIL  supervisor VmRSS <= 1024 KiB   (not measured, see error above)")
    else:
        goal(vmrss <= 1024, f"supervisor VmRSS <= 1024 KiB   ({vmrss} KiB)")
    if failed:
        print(f"exit status 1: launch failure(s) in {', '.join(t.name for t in failed)}",
              file=sys.stderr)
    return 0 if vmrss is not None and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
