#!/usr/bin/env python3
"""Layer unpacking: strata against umoci and GNU tar, in one run (see hack/bench-layers).

Runs inside the private mount namespace hack/bench-layers makes, on a
private tmpfs mounted here and unmounted at the end. Builds two images into
it: the debootstrap one (hack/mkimage-debootstrap, three gzip layers) and
the busybox one (hack/mkimage-busybox). Then:

1. Unpack, N rounds, the tools interleaved (the order rotates each round):
   - strata: a fresh empty store, `strata bundle --image`, then the timed
     `strata create` (verifies digests and diff_ids, unpacks every layer,
     creates the container); deleted, then a second, timed `create` on the
     same store (layers cached); deleted.
   - `umoci unpack --image LAYOUT:REF DIR`, a fresh DIR.
   - GNU tar: `tar -xzf` of each layer blob, in order, into a fresh DIR
     (no whiteout handling: `.wh.*` files are extracted as files).
2. create+delete from cached layers against create+delete of a plain bundle
   whose rootfs is the same tree, already extracted (`strata spec` + a copy of
   umoci's unpack), for the busybox and the debootstrap image, the four
   interleaved.

Reports medians of wall time and CPU time (user+sys of the process and the
children it waited for, from wait4), MB/s of uncompressed layer data, and
ratios; writes the `## Layers` section of docs/benchmarks.md, keeping the
rest of the file (and a `### Where the unpack time goes` subsection of the
old section, which is written by hand).
"""
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
STRATA = os.environ.get("STRATA", os.path.join(ROOT, "target/release/strata"))
N = int(os.environ.get("BENCH_N", "5"))
WARM = int(os.environ.get("BENCH_WARMUP", "1"))
CREATE_N = int(os.environ.get("BENCH_CREATE_N", "100"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "300"))
REF = "latest"
KEEP_SUB = "### Where the unpack time goes"


def log(*a):
    print("bench-layers:", *a, file=sys.stderr, flush=True)


def run(cmd, cwd=None):
    """Runs cmd; returns (wall_s, cpu_s). Raises on a non-zero exit."""
    # stderr to a file: a created container keeps strata's stdio open.
    with tempfile.TemporaryFile() as errf:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=errf, cwd=cwd)
        killer = threading.Timer(TIMEOUT, p.kill)
        killer.start()
        _, status, ru = os.wait4(p.pid, 0)
        killer.cancel()
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        if rc != 0:
            errf.seek(0)
            raise RuntimeError(f"{' '.join(cmd)}: exit {rc}: {errf.read().decode(errors='replace').strip()[:400]}")
    return wall, ru.ru_utime + ru.ru_stime


def quiet(cmd, **kw):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw)


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


def first_line(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
        return (out.stdout or out.stderr).splitlines()[0].strip()
    except Exception:
        return "?"


def dpkg_version(pkg):
    return first_line(["dpkg-query", "-W", "-f=${Version}", pkg])


class Image:
    """An image layout on the tmpfs and what its layers hold."""

    def __init__(self, name, layout):
        self.name = name
        self.layout = layout
        index = json.load(open(os.path.join(layout, "index.json")))
        desc = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == REF][0]
        manifest = json.load(open(self.blob(desc["digest"])))
        self.layers = [self.blob(l["digest"]) for l in manifest["layers"]]
        self.compressed = sum(os.path.getsize(b) for b in self.layers)
        self.uncompressed = 0
        self.entries = 0
        for b in self.layers:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            with open(b, "rb") as f:
                while chunk := f.read(1 << 20):
                    self.uncompressed += len(d.decompress(chunk))
                self.uncompressed += len(d.flush())
            with tarfile.open(b, "r|gz") as t:
                self.entries += sum(1 for _ in t)

    def blob(self, digest):
        return os.path.join(self.layout, "blobs", *digest.split(":", 1))

    @property
    def ref(self):
        return f"{self.layout}:{REF}"


class Bench:
    def __init__(self, base):
        self.base = base
        self.root = os.path.join(base, "state")
        self.seq = 0
        self.samples = {}  # key -> list of (wall, cpu)

    def cid(self):
        self.seq += 1
        return f"bench-layers-{os.getpid()}-{self.seq}"

    def strata(self, *args, store=None):
        cmd = [STRATA, "--root", self.root]
        if store:
            cmd += ["--store", store]
        return cmd + list(args)

    def record(self, key, sample):
        self.samples.setdefault(key, []).append(sample)

    def scratch(self, tag):
        self.seq += 1
        return os.path.join(self.base, f"{tag}-{self.seq}")

    # --- unpack ------------------------------------------------------------
    def u_strata(self, img, keep):
        store, bundle = self.scratch("store"), self.scratch("bundle")
        quiet(self.strata("bundle", "--image", img.ref, bundle, store=store))
        try:
            cid = self.cid()
            s = run(self.strata("create", "--bundle", bundle, cid, store=store))
            quiet(self.strata("delete", "--force", cid, store=store))
            cid = self.cid()
            c = run(self.strata("create", "--bundle", bundle, cid, store=store))
            quiet(self.strata("delete", "--force", cid, store=store))
            left = os.listdir(os.path.join(store, "containers")) + os.listdir(os.path.join(store, "tmp"))
            if left:
                log(f"strata left in the store after delete: {left}")
            if keep:
                self.record("strata create (unpack)", s)
                self.record("strata create (cached)", c)
        finally:
            rmtree(store)
            rmtree(bundle)

    def u_umoci(self, img, keep):
        d = self.scratch("umoci")
        try:
            s = run(["umoci", "unpack", "--image", img.ref, d])
            if keep:
                self.record("umoci unpack", s)
        finally:
            rmtree(d)

    def u_tar(self, img, keep):
        d = self.scratch("tar")
        os.mkdir(d)
        try:
            wall = cpu = 0.0
            for b in img.layers:
                w, c = run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xzf", b, "-C", d])
                wall, cpu = wall + w, cpu + c
            if keep:
                self.record("GNU tar -xzf", (wall, cpu))
        finally:
            rmtree(d)

    def unpack(self, img):
        tools = [self.u_strata, self.u_umoci, self.u_tar]
        t0 = time.perf_counter()
        for i in range(WARM + N):
            for fn in tools:
                fn(img, i >= WARM)
            tools = tools[1:] + tools[:1]
            log(f"unpack round {i + 1}/{WARM + N} ({'warm-up' if i < WARM else 'measured'})")
        log(f"unpack: done in {time.perf_counter() - t0:.1f}s")

    # --- create from cached layers vs a prepared rootfs ---------------------
    def prepare(self, img, store):
        """(image bundle, plain bundle with the same tree already extracted)."""
        ib = os.path.join(self.base, f"bundle-image-{img.name}")
        quiet(self.strata("bundle", "--image", img.ref, ib, store=store))
        pb = os.path.join(self.base, f"bundle-plain-{img.name}")
        os.mkdir(pb)
        quiet([STRATA, "spec", "--bundle", pb])
        icfg = json.load(open(os.path.join(ib, "config.json")))
        pcfg = json.load(open(os.path.join(pb, "config.json")))
        # The same process (args, env, cwd, terminal off) and a writable root,
        # as the image bundle has: only where the rootfs comes from differs.
        pcfg["process"] = icfg["process"]
        pcfg["root"] = {"path": "rootfs", "readonly": False}
        json.dump(pcfg, open(os.path.join(pb, "config.json"), "w"), indent=2)
        u = self.scratch("umoci-prep")
        quiet(["umoci", "unpack", "--image", img.ref, u])
        quiet(["cp", "-a", os.path.join(u, "rootfs"), os.path.join(pb, "rootfs")])
        rmtree(u)
        # Layers into the store now, so every measured create finds them.
        cid = self.cid()
        quiet(self.strata("create", "--bundle", ib, cid, store=store))
        quiet(self.strata("delete", "--force", cid, store=store))
        return ib, pb

    def c_once(self, key, bundle, store, keep):
        cid = self.cid()
        cw, cc = run(self.strata("create", "--bundle", bundle, cid, store=store))
        dw, dc = run(self.strata("delete", "--force", cid, store=store))
        if keep:
            self.record(key + " create", (cw, cc))
            self.record(key + " delete", (dw, dc))
            self.record(key + " create+delete", (cw + dw, cc + dc))

    def create_compare(self, imgs):
        store = os.path.join(self.base, "store-create")
        variants = []
        for img in imgs:
            ib, pb = self.prepare(img, store)
            variants.append((f"{img.name} cached layers", ib))
            variants.append((f"{img.name} prepared rootfs", pb))
        t0 = time.perf_counter()
        warm = max(WARM, 2)
        for i in range(warm + CREATE_N):
            for key, b in variants:
                self.c_once(key, b, store, i >= warm)
            variants = variants[1:] + variants[:1]
        left = os.listdir(os.path.join(store, "containers")) + os.listdir(os.path.join(store, "tmp"))
        if left:
            log(f"strata left in the store after delete: {left}")
        log(f"create comparison: done in {time.perf_counter() - t0:.1f}s")

    def cleanup(self):
        """Deletes any container still in the state dir; reports cgroups left behind."""
        import glob
        left = glob.glob(f"/sys/fs/cgroup/*/strata-bench-layers-{os.getpid()}-*") + \
            glob.glob(f"/sys/fs/cgroup/strata-bench-layers-{os.getpid()}-*")
        if left:
            log(f"cgroups left behind by delete: {left}")
        if not os.path.isdir(self.root):
            return
        for cid in os.listdir(self.root):
            # The state records the container's store: no --store needed.
            log(f"cleanup: deleting leftover container {cid}")
            subprocess.run(self.strata("delete", "--force", cid), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def loadavg():
    return open("/proc/loadavg").read().split()[0]


def quartiles(xs):
    if len(xs) < 4:
        return float("nan"), float("nan")
    q = statistics.quantiles(xs, n=4)
    return q[0], q[2]


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def report(b, deb, bb, info):
    s = b.samples
    w = lambda k: med([x[0] for x in s.get(k, [])])
    c = lambda k: med([x[1] for x in s.get(k, [])])
    MB = 1e6
    L = []
    L.append("## Layers\n")
    L.append(f"Measured by `hack/bench-layers` (BENCH_N={N}) on {time.strftime('%Y-%m-%d')}: {platform.node()}, "
             f"{info['cpu']}, {os.cpu_count()} CPUs (`nproc`), kernel {platform.release()}; 1-minute load average "
             f"{info['load']} at the start and {loadavg()} at the end (the machine is shared). Everything runs on a "
             "private tmpfs in a private mount namespace, so no disk I/O is timed.\n")
    L.append("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in info["versions"].items()) + "\n")
    L.append(f"The image, from `hack/mkimage-debootstrap` (Debian bookworm `debootstrap --variant=minbase`): "
             f"{len(deb.layers)} gzip layers, {deb.compressed / MB:.1f} MB compressed, "
             f"{deb.uncompressed / MB:.1f} MB of uncompressed layer tar, {deb.entries} tar entries. "
             "Layer 1 is the rootfs without /usr/share and /var/lib/apt, layer 2 /usr/share, layer 3 "
             "/var/lib/apt and two whiteouts (`/etc/.wh.motd`, `/usr/share/doc/.wh.debconf`). "
             "MB/s is uncompressed layer data (MB = 10^6 bytes) over the median wall time.\n")
    L.append(f"### Unpack\n")
    L.append(f"{N} measured rounds after {WARM} warm-up rounds; in each round every tool runs once, "
             "the order rotating. Medians. CPU is user+sys of the process and the children it waited for.\n")
    L.append("| what | wall (ms) | CPU (ms) | MB/s | wall / strata unpack |")
    L.append("|---|---|---|---|---|")
    ref = w("strata create (unpack)")
    rows = [
        ("strata create (unpack)", "`strata create`, fresh store: verify + unpack 3 layers + create"),
        ("strata create (cached)", "`strata create`, layers already in the store"),
        ("umoci unpack", "`umoci unpack --image LAYOUT:REF DIR`"),
        ("GNU tar -xzf", "`tar -xzf` of the 3 blobs in order (no whiteouts)"),
    ]
    for k, label in rows:
        rate = "" if k == "strata create (cached)" else f"{deb.uncompressed / MB / w(k):.0f}"
        L.append(f"| {label} | {w(k) * 1000:.0f} | {c(k) * 1000:.0f} | {rate} | {w(k) / ref:.2f} |")
    unpack_only = ref - w("strata create (cached)")
    L.append("")
    L.append(f"strata's unpack alone (first create minus cached create): {unpack_only * 1000:.0f} ms, "
             f"{deb.uncompressed / MB / unpack_only:.0f} MB/s.\n")
    L.append("Per-round wall times (ms), in round order:\n")
    L.append("| what | " + " | ".join(f"r{i + 1}" for i in range(N)) + " |")
    L.append("|---|" + "---|" * N)
    for k, _ in rows:
        L.append(f"| {k} | " + " | ".join(f"{x[0] * 1000:.0f}" for x in s.get(k, [])) + " |")
    L.append("")
    r_umoci = w("umoci unpack") / ref
    r_tar = w("GNU tar -xzf") / ref
    L.append("Targets:\n")
    L.append(f"- strata's first create at least 2x faster than `umoci unpack`: umoci/strata = {r_umoci:.2f}: "
             f"**{'met' if r_umoci >= 2 else 'not met'}**.")
    L.append(f"- strata's first create at least as fast as GNU tar: tar/strata = {r_tar:.2f}: "
             f"**{'met' if r_tar >= 1 else 'not met'}**.")
    L.append("")
    L.append("Notes: strata's time includes the whole `create` (namespaces, cgroups, the init layer, the overlay "
             "mount, init waiting on `exec.fifo`) and checking every blob's digest and diff_id; umoci's includes "
             "writing its mtree manifest of the unpacked rootfs (which hashes every file); GNU tar decompresses in a "
             "separate `gzip -d` process, i.e. on the second core, and does not handle whiteouts, so its tree still "
             "has /etc/motd and /usr/share/doc/debconf, plus the two `.wh.` files. tar runs with "
             "`--numeric-owner --xattrs --xattrs-include=*` so that it restores the same metadata as the others.\n")
    L.append("### create from cached layers vs a prepared rootfs\n")
    L.append(f"`create` + `delete --force`, {CREATE_N} measured rounds after {max(WARM, 2)} warm-up rounds, "
             "the four variants interleaved. \"cached layers\": the image bundle from `strata bundle --image`, all "
             "its layers already in the store (create writes the init layer and mounts overlayfs). \"prepared "
             "rootfs\": `strata spec` with the same process, and the image's tree (umoci's unpack) copied into "
             "`rootfs/`. Medians, ms.\n")
    L.append("| image | uncompressed | rootfs | create | delete | create+delete | (p25-p75) | CPU create+delete |")
    L.append("|---|---|---|---|---|---|---|---|")
    diffs = {}
    for img in (bb, deb):
        for v in ("cached layers", "prepared rootfs"):
            k = f"{img.name} {v}"
            q1, q3 = quartiles([x[0] * 1000 for x in s.get(k + " create+delete", [])])
            L.append(f"| {img.name} | {img.uncompressed / MB:.1f} MB | {v} | {w(k + ' create') * 1000:.2f} | "
                     f"{w(k + ' delete') * 1000:.2f} | {w(k + ' create+delete') * 1000:.2f} | {q1:.1f}-{q3:.1f} | "
                     f"{c(k + ' create+delete') * 1000:.2f} |")
        diffs[img.name] = (w(f"{img.name} cached layers create+delete") - w(f"{img.name} prepared rootfs create+delete")) * 1000
    L.append("")
    L.append("Target: create+delete from cached layers within 2 ms of a prepared rootfs, whatever the image size: " +
             "; ".join(f"{n}: {d:+.2f} ms" for n, d in diffs.items()) + ": " +
             f"**{'met' if all(abs(d) <= 2 for d in diffs.values()) else 'not met'}**.\n")
    return "\n".join(L) + "\n"


def write_section(text):
    path = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs", "benchmarks.md"))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    old = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    m = re.search(r"^## Layers[ \t]*\n", old, re.M)
    keep = ""
    if m:
        nxt = re.search(r"^## ", old[m.end():], re.M)
        end = m.end() + nxt.start() if nxt else len(old)
        section = old[m.start():end]
        k = section.find(KEEP_SUB)
        if k >= 0:
            keep = "\n" + section[k:].rstrip("\n") + "\n"
        new = old[:m.start()] + text + keep + ("\n" + old[end:] if end < len(old) else "")
    elif old.strip():
        new = old.rstrip("\n") + "\n\n" + text
    else:
        new = text
    open(path, "w").write(new)
    return path


def main():
    if os.geteuid() != 0:
        sys.exit("hack/bench-layers: run as root")
    base = tempfile.mkdtemp(prefix="strata-bench-layers-")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6g,mode=0755", "tmpfs", base], check=True)
    b = Bench(base)
    try:
        info = {
            "cpu": next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?"),
            "load": loadavg(),
            "versions": {
                "strata": first_line([STRATA, "--version"]),
                "umoci": first_line(["umoci", "--version"]),
                "GNU tar": first_line(["tar", "--version"]),
                "gzip": first_line(["gzip", "--version"]),
                "debootstrap": dpkg_version("debootstrap"),
            },
        }
        log(f"building the images in {base}")
        env = dict(os.environ, TMPDIR=base)
        quiet([os.path.join(HERE, "mkimage-debootstrap"), os.path.join(base, "deb"), REF], env=env)
        quiet([os.path.join(HERE, "mkimage-busybox"), os.path.join(base, "busybox"), REF], env=env)
        deb = Image("debootstrap", os.path.join(base, "deb"))
        bb = Image("busybox", os.path.join(base, "busybox"))
        log(f"debootstrap image: {deb.compressed} bytes compressed, {deb.uncompressed} uncompressed, {deb.entries} entries")
        b.unpack(deb)
        b.create_compare([bb, deb])
        if os.environ.get("BENCH_RAW"):
            json.dump(b.samples, open(os.environ["BENCH_RAW"], "w"), indent=1)
        text = report(b, deb, bb, info)
        print(text)
        log(f"wrote {write_section(text)}")
    finally:
        b.cleanup()
        subprocess.run(["umount", base])
        os.rmdir(base)


if __name__ == "__main__":
    main()
