#!/usr/bin/env python3
"""strata against runc, crun and youki, in one run (see hack/bench).

Runs each workload for every runtime interleaved (A B C D A B C D ...),
after warm-up, on the same busybox bundle, and reports medians of wall time,
CPU time (user+sys) and peak RSS of the runtime processes, with the ratio of
each runtime to strata. Writes docs/benchmarks.md and docs/benchmarks.svg.

Timings are of whole processes: each runtime invocation runs under
`/usr/bin/time`-like accounting via os.wait4 (rusage of the runtime process
and the descendants it waited for).
"""
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
N = int(os.environ.get("BENCH_N", "30"))
WARM = int(os.environ.get("BENCH_WARMUP", "3"))
CONCURRENT = int(os.environ.get("BENCH_CONCURRENT", "100"))
# The shell-loop workload: LOOP_ROUNDS batches of LOOP_N containers each.
LOOP_N = int(os.environ.get("BENCH_LOOP_N", "30"))
LOOP_ROUNDS = int(os.environ.get("BENCH_LOOP_ROUNDS", "5"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "30"))


def runtimes():
    found = {}
    cands = {
        "strata": [os.environ.get("STRATA", os.path.join(ROOT, "target/release/strata"))],
        "crun": ["/usr/bin/crun"],
        "runc": ["/usr/sbin/runc", "/usr/bin/runc"],
        "youki": [os.environ.get("YOUKI", ""), "/opt/youki/bin/youki", os.path.expanduser("~/.cargo/bin/youki")],
        # STRATA_BEFORE: an earlier strata build, run beside the others for
        # a before/after figure in the same run.
        "strata-before": [os.environ.get("STRATA_BEFORE", "")],
    }
    for name, paths in cands.items():
        for p in paths:
            if p and os.access(p, os.X_OK):
                found[name] = p
                break
    return found


def run(cmd, stdin=subprocess.DEVNULL):
    """Runs cmd; returns (wall_s, cpu_s, maxrss_kib, rc).

    The peak RSS comes from GNU time's %M: a child forked from this Python
    process would report Python's own size (the high-water mark survives
    exec), so the runtime is started by the small `time` process instead.
    """
    # stderr goes to a file: a created container keeps the runtime's stdio
    # open, so a pipe would not reach EOF before the container exits.
    with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile(mode="r") as rssf:
        cmd = ["/usr/bin/time", "-f", "%M", "-o", rssf.name] + cmd
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=stdin, stdout=subprocess.DEVNULL, stderr=errf, start_new_session=True)
        # A runtime that hangs is killed, with its whole process group (not
        # just the `time` wrapper), and the run fails rather than stalling.
        killer = threading.Timer(TIMEOUT, lambda: os.killpg(p.pid, 9))
        killer.start()
        _, status, ru = os.wait4(p.pid, 0)
        killer.cancel()
        wall = time.perf_counter() - t0
        errf.seek(0)
        err = errf.read().decode(errors="replace")
        rss = int((rssf.read().strip().splitlines() or ["0"])[-1] or 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {p.returncode}: {err.strip()[:300]}")
    return wall, ru.ru_utime + ru.ru_stime, rss, p.returncode


def make_bundle(base, args):
    b = os.path.join(base, "bundle-" + "-".join(a.strip("/").replace("/", "_") for a in args))
    env = dict(os.environ, STRATA=runtimes()["strata"])
    subprocess.run([os.path.join(HERE, "mkbundle-busybox"), b] + args, check=True, env=env, stdout=subprocess.DEVNULL)
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}]
    cfg["ociVersion"] = "1.0.2-dev"  # crun 1.8.1 refuses 1.2.0
    json.dump(cfg, open(os.path.join(b, "config.json"), "w"))
    return b


class Bench:
    def __init__(self, rts, base):
        self.rts = rts
        self.base = base
        self.results = {}  # workload -> runtime -> list of (wall, cpu, rss)
        self.failures = {}  # (workload, runtime) -> count
        self.seq = 0

    def root(self, rt):
        return os.path.join(self.base, "state-" + rt)

    def rt(self, name, *args):
        return [self.rts[name], "--root", self.root(name)] + list(args)

    def cid(self, rt):
        self.seq += 1
        return f"bench-{rt}-{os.getpid()}-{self.seq}"

    def record(self, wl, rt, sample):
        self.results.setdefault(wl, {}).setdefault(rt, []).append(sample)

    def interleave(self, wl, fn):
        order = list(self.rts)
        t0 = time.perf_counter()
        for i in range(WARM + N):
            for rt in order:
                try:
                    s = fn(rt)
                except RuntimeError as e:
                    print(f"  {wl}: {rt}: {e}", file=sys.stderr)
                    self.failures[(wl, rt)] = self.failures.get((wl, rt), 0) + 1
                    continue
                if i >= WARM:
                    self.record(wl, rt, s)
            order = order[1:] + order[:1]
        print(f"  {wl}: done in {time.perf_counter() - t0:.1f}s", file=sys.stderr)

    def w_run(self, rt, bundle):
        return run(self.rt(rt, "run", "--bundle", bundle, self.cid(rt)))[:3]

    def w_lifecycle(self, rt, bundle):
        cid = self.cid(rt)
        tot = [0.0, 0.0, 0]
        for cmd in (["create", "--bundle", bundle, cid], ["start", cid]):
            w, c, m, _ = run(self.rt(rt, *cmd))
            tot = [tot[0] + w, tot[1] + c, max(tot[2], m)]
        # wait: the process is /bin/true; poll state until stopped
        t0 = time.perf_counter()
        while True:
            out = subprocess.run(self.rt(rt, "state", cid), capture_output=True, text=True)
            if '"stopped"' in out.stdout:
                break
            time.sleep(0.0005)
        tot[0] += time.perf_counter() - t0
        w, c, m, _ = run(self.rt(rt, "delete", cid))
        return (tot[0] + w, tot[1] + c, max(tot[2], m))

    def w_exec(self, rt, cid):
        return run(self.rt(rt, "exec", cid, "/bin/true"))[:3]

    def concurrent(self, rt, bundle):
        ids = [self.cid(rt) for _ in range(CONCURRENT)]
        t0 = time.perf_counter()
        rss_files = [tempfile.NamedTemporaryFile(mode="r") for _ in ids]
        procs = [subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", f.name] + self.rt(rt, "create", "--bundle", bundle, i),
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i, f in zip(ids, rss_files)]
        peak, cpu, failed = 0, 0.0, 0
        for p, f in zip(procs, rss_files):
            _, status, ru = os.wait4(p.pid, 0)
            cpu += ru.ru_utime + ru.ru_stime
            if os.waitstatus_to_exitcode(status) != 0:
                failed += 1
            peak = max(peak, int((f.read().strip().splitlines() or ["0"])[-1] or 0))
            f.close()
        created = time.perf_counter() - t0
        for i in ids:
            subprocess.run(self.rt(rt, "delete", "--force", i), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        total = time.perf_counter() - t0
        return created, total, cpu, peak, failed


def stock_bundle(base, strata):
    """The bundle a user scripting runtimes starts from: `runc spec`'s
    config (made by `strata spec`, the same document), terminal off,
    /bin/true, the default namespaces (network included)."""
    b = os.path.join(base, "bundle-stock")
    subprocess.run([os.path.join(HERE, "mkbundle-busybox"), b, "/bin/true"], check=True,
                   env=dict(os.environ, STRATA=strata), stdout=subprocess.DEVNULL)
    os.remove(os.path.join(b, "config.json"))
    subprocess.run([strata, "spec", "--bundle", b], check=True)
    cfg = json.load(open(os.path.join(b, "config.json")))
    cfg["process"]["terminal"] = False
    cfg["process"]["args"] = ["/bin/true"]
    cfg["ociVersion"] = "1.0.2-dev"  # crun 1.8.1 refuses 1.2.0
    json.dump(cfg, open(os.path.join(b, "config.json"), "w"))
    return b


LOOP = r"""
r=$1 root=$2 bundle=$3 n=$4 what=$5
i=0
while [ $i -lt $n ]; do
  i=$((i + 1))
  if [ "$what" = run ]; then
    "$r" --root "$root" run --bundle "$bundle" c$i >/dev/null
  else
    "$r" --root "$root" create --bundle "$bundle" c$i >/dev/null &&
    "$r" --root "$root" start c$i &&
    while ! "$r" --root "$root" state c$i | grep -q '"stopped"'; do :; done &&
    "$r" --root "$root" delete c$i
  fi || exit 1
done
"""


def shell_loop(rts, base, bundle):
    """The harness of a user who scripts runtimes: a `sh` loop of LOOP_N
    containers per batch, a fresh --root per batch, the runtimes
    interleaved batch by batch. Per container: the median over batches of
    the batch's wall time / LOOP_N, for `run` and for create, start, wait
    for stopped, delete. The shell's own fork and exec of each command are
    in it, as they are for such a user."""
    res = {}
    for what in ("run", "lifecycle"):
        order = list(rts)
        for k in range(LOOP_ROUNDS + 1):
            for rt in order:
                root = os.path.join(base, f"loop-{rt}-{what}-{k}")
                t0 = time.perf_counter()
                p = subprocess.run(["sh", "-c", LOOP, "loop", rts[rt], root, bundle, str(LOOP_N), what],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                per = (time.perf_counter() - t0) / LOOP_N
                if p.returncode != 0:
                    print(f"  shell loop {what}: {rt}: {p.stderr.decode(errors='replace').strip()[:300]}", file=sys.stderr)
                elif k > 0:  # the first batch warms up
                    res.setdefault(what, {}).setdefault(rt, []).append(per)
                # A batch that failed midway leaves containers: deleted, so
                # that no cgroup or process outlives the benchmark.
                for cid in os.listdir(root) if os.path.isdir(root) else []:
                    subprocess.run([rts[rt], "--root", root, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                shutil.rmtree(root, ignore_errors=True)
            order = order[1:] + order[:1]
        print(f"  shell loop {what}: done", file=sys.stderr)
    return res


def working_criu():
    """A CRIU whose `criu check` passes: BENCH_CRIU, or criu on PATH."""
    path = os.environ.get("BENCH_CRIU") or shutil.which("criu")
    if not path:
        return None
    ok = subprocess.run([path, "check"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
    return path if ok else None


def checkpoint_restore(b, rts, bundle, criu):
    """checkpoint, then restore -d, of a running `sleep` container, for the
    runtimes that have both commands and take --criu (strata, runc), with
    the same CRIU. Its stdio is /dev/null, which both make the container's
    own, so nothing of the host's is open inside."""
    names = [n for n in ("strata", "runc") if n in rts]
    cids = {}
    for rt in names:
        cids[rt] = b.cid(rt)
        subprocess.run(b.rt(rt, "run", "-d", "--bundle", bundle, cids[rt]), check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    seq = [0]

    def once(rt):
        seq[0] += 1
        img = os.path.join(b.base, f"ckpt-{rt}-{seq[0]}")
        c = run([rts[rt], "--root", b.root(rt), "--criu", criu, "checkpoint", "--image-path", img, cids[rt]])
        r = run([rts[rt], "--root", b.root(rt), "--criu", criu, "restore", "-d", "--bundle", bundle, "--image-path", img, cids[rt]])
        shutil.rmtree(img, ignore_errors=True)
        return c[0] + r[0], c[1] + r[1], max(c[2], r[2])

    sub = Bench({n: rts[n] for n in names}, b.base)
    sub.seq = b.seq + 1000
    try:
        sub.interleave("checkpoint+restore (CRIU)", once)
    finally:
        for rt in names:
            subprocess.run(b.rt(rt, "delete", "--force", cids[rt]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for wl, per in sub.results.items():
        b.results[wl] = per
    b.failures.update(sub.failures)


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    if os.geteuid() != 0:
        sys.exit("hack/bench: run as root")
    rts = runtimes()
    print("runtimes:", rts, file=sys.stderr)
    base = tempfile.mkdtemp(prefix="strata-bench-")
    try:
        b = Bench(rts, base)
        true_bundle = make_bundle(base, ["/bin/true"])
        sleep_bundle = make_bundle(base, ["sleep", "1000"])
        b.interleave("run /bin/true", lambda rt: b.w_run(rt, true_bundle))
        b.interleave("create+start+wait+delete", lambda rt: b.w_lifecycle(rt, true_bundle))
        long = {}
        for rt in rts:
            long[rt] = b.cid(rt)
            subprocess.run(b.rt(rt, "run", "-d", "--bundle", sleep_bundle, long[rt]), check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            b.interleave("exec /bin/true", lambda rt: b.w_exec(rt, long[rt]))
        finally:
            for rt in rts:
                subprocess.run(b.rt(rt, "delete", "--force", long[rt]), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        criu = working_criu()
        if criu:
            checkpoint_restore(b, rts, sleep_bundle, criu)
        else:
            print("  checkpoint+restore: skipped (no working CRIU: set BENCH_CRIU to a CRIU 4.1 or newer)", file=sys.stderr)
        conc = {rt: b.concurrent(rt, sleep_bundle) for rt in rts}
        loop = shell_loop(rts, base, stock_bundle(base, rts["strata"]))
        report(b, rts, conc, loop)
    finally:
        for rt in rts:
            r = b.root(rt)
            if os.path.isdir(r):
                for cid in os.listdir(r):
                    subprocess.run([rts[rt], "--root", r, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


def version(path):
    try:
        return subprocess.run([path, "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        return "?"


def report(b, rts, conc, loop):
    names = list(rts)
    lines = []
    lines.append("# Benchmarks\n")
    lines.append(f"Measured by `hack/bench` on {time.strftime('%Y-%m-%d')}: {platform.node()}, kernel {platform.release()}, "
                 f"{os.cpu_count()} CPUs, cgroup v1 (the unified hierarchy unmounted in the benchmark's private mount namespace).\n")
    lines.append("Versions: " + "; ".join(f"{n}: `{version(rts[n])}`" for n in names) + "\n")
    lines.append(f"Each workload ran {N} times per runtime after {WARM} warm-up runs, the runtimes interleaved. "
                 "Medians; the ratio is runtime/strata (below 1: faster or leaner than strata).\n")
    lines.append("| workload | metric | " + " | ".join(names) + " | " + " | ".join(f"{n}/strata" for n in names if n != "strata") + " |")
    lines.append("|---|---|" + "---|" * (2 * len(names) - 1))
    plot = []
    for wl, per in b.results.items():
        for mi, (metric, unit, scale) in enumerate([("wall", "ms", 1000), ("cpu", "ms", 1000), ("peak RSS", "MiB", 1 / 1024)]):
            vals = {n: med([s[mi] for s in per.get(n, [])]) * scale for n in names}
            # A runtime without the workload (no checkpoint/restore) shows a dash.
            num = lambda v: "–" if v != v else f"{v:.2f}"
            ratios = [num(vals[n] / vals['strata']) for n in names if n != "strata"]
            lines.append(f"| {wl} | {metric} ({unit}) | " + " | ".join(num(vals[n]) for n in names) + " | " + " | ".join(ratios) + " |")
            if metric == "wall":
                plot.append((wl, vals))
    if b.failures:
        lines.append("")
        lines.append("Failed runs (left out of the medians): " + ", ".join(f"{rt} {wl}: {n}" for (wl, rt), n in b.failures.items()))
    lines.append("")
    lines.append(f"{CONCURRENT} containers created concurrently, then deleted:\n")
    lines.append("| runtime | create wall (s) | create+delete wall (s) | CPU of creates (s) | peak RSS of one runtime process (MiB) | failed |")
    lines.append("|---|---|---|---|---|---|")
    for n in names:
        c = conc[n]
        lines.append(f"| {n} | {c[0]:.2f} | {c[1]:.2f} | {c[2]:.2f} | {c[3] / 1024:.1f} | {c[4]} |")
    lines.append("")
    lines.append(f"A shell loop, as a user who scripts runtimes runs one: `runc spec`'s bundle (terminal off, `/bin/true`, "
                 f"the default namespaces, network included), {LOOP_N} containers per batch, a fresh `--root` per batch, "
                 f"{LOOP_ROUNDS} batches per runtime after one warm-up, interleaved. Median per container (ms); "
                 "the shell's fork and exec of each command are included:\n")
    lines.append("| workload | " + " | ".join(names) + " | " + " | ".join(f"{n}/strata" for n in names if n != "strata") + " |")
    lines.append("|---|" + "---|" * (2 * len(names) - 1))
    for what, label in (("run", "run"), ("lifecycle", "create, start, wait, delete")):
        vals = {n: med(loop.get(what, {}).get(n, [])) * 1000 for n in names}
        num = lambda v: "–" if v != v else f"{v:.2f}"
        ratios = [num(vals[n] / vals["strata"]) for n in names if n != "strata"]
        lines.append(f"| {label} | " + " | ".join(num(vals[n]) for n in names) + " | " + " | ".join(ratios) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    docs = os.path.join(ROOT, "docs")
    os.makedirs(docs, exist_ok=True)
    out = os.path.join(docs, "benchmarks.md")
    keep = ""
    if os.path.exists(out):
        old = open(out).read()
        # Hand-written sections (## headings) survive a new run.
        if "\n## " in old:
            keep = old[old.index("\n## "):]
    open(out, "w").write(text + "\n![wall-time medians](benchmarks.svg)\n" + keep)
    open(os.path.join(docs, "benchmarks.svg"), "w").write(svg(plot, names))


def svg(plot, names):
    colors = {"strata": "#2a7", "crun": "#27c", "runc": "#c72", "youki": "#a4c"}
    w, rowh, barh, left = 760, 26 + 14 * len(names), 12, 200
    h = 40 + rowh * len(plot)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<text x="10" y="20" font-size="14">median wall time (ms), lower is better</text>']
    for i, (wl, vals) in enumerate(plot):
        y0 = 40 + i * rowh
        out.append(f'<text x="10" y="{y0 + 12}">{wl}</text>')
        top = max(v for v in vals.values() if v == v) or 1
        for j, n in enumerate(names):
            v = vals[n]
            bw = 0 if v != v else (w - left - 80) * v / top
            y = y0 + j * 14
            out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{barh}" fill="{colors.get(n, "#888")}"/>')
            out.append(f'<text x="{left + bw + 4:.1f}" y="{y + 10}">{n} {v:.1f}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    main()
