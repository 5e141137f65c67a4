#!/usr/bin/env python3
"""Layer unpacking: strata against umoci, GNU tar and podman, in one run (see hack/bench-layers).

Runs inside the private mount namespace hack/bench-layers makes, on a
private tmpfs mounted here and unmounted at the end. Builds four images into
it: the debootstrap one (hack/mkimage-debootstrap, three gzip layers of
unequal size), the same rootfs cut into BENCH_LAYERS (default 10) layers of
similar size and into one layer (hack/mkimage-layers), and the busybox one
(hack/mkimage-busybox). Then:

1. Cold create, N rounds, for the debootstrap, the 10-layer and the 1-layer
   image; in each round every image, and for each image every tool once, the
   order of the tools rotating each round:
   - strata parallel (the default, one unpack worker per core): a fresh empty
     store, `strata bundle --image`, then the timed `strata create`
     (verifies digests and diff_ids, unpacks every layer, creates the
     container); deleted, then a second, timed `create` on the same store
     (layers cached); deleted.
   - strata sequential: the same first `create` with STRATA_UNPACK_JOBS=1.
   - `umoci unpack --image LAYOUT:REF DIR`, a fresh DIR.
   - GNU tar: `tar -xzf` of each layer blob, in order, into a fresh DIR
     (no whiteout handling: `.wh.*` files are extracted as files).
   - podman: an empty podman store (--root/--runroot in a fresh dir),
     the timed `podman pull oci:LAYOUT:REF` then the timed
     `podman run --rm IMAGE true`; `podman rmi -a -f`, the dir removed.
     podman runs in a nested private mount namespace in which
     /sys/fs/cgroup/unified is unmounted (crun 1.8.1 refuses the hybrid
     cgroup layout; hack/bench does the same for every runtime).
   Every timed process of this step runs under /usr/bin/time for its peak
   RSS (GNU time's %M), except the cached create.
2. create+delete from cached layers against create+delete of a plain bundle
   whose rootfs is the same tree, already extracted (`strata spec` + a copy of
   umoci's unpack), for the busybox and the debootstrap image, the four
   interleaved.

Reports medians of wall time and CPU time (user+sys of the process and the
children it waited for, from wait4), peak RSS, MB/s of uncompressed layer
data, and ratios; writes the `## Layers` section of docs/benchmarks.md (or
BENCH_DOC), keeping the rest of the file (and a `### Where the unpack time
goes` subsection of the old section, which is written by hand), and an SVG
bar chart, benchmarks-layers.svg, next to it.
"""
import html
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
# An earlier strata build, run beside this one in the same rounds (its cold
# create in parallel and its create+delete from cached layers), for the
# before/after of a change.
BEFORE = os.environ.get("STRATA_BEFORE", "")
N = int(os.environ.get("BENCH_N", "5"))
WARM = int(os.environ.get("BENCH_WARMUP", "1"))
CREATE_N = int(os.environ.get("BENCH_CREATE_N", "100"))
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "300"))
NLAYERS = int(os.environ.get("BENCH_LAYERS", "10"))
PODMAN_DRIVER = os.environ.get("BENCH_PODMAN_DRIVER", "overlay")
DOC = os.environ.get("BENCH_DOC", os.path.join(ROOT, "docs", "benchmarks.md"))
SVG = "benchmarks-layers.svg"  # next to DOC
GNU_TIME = "/usr/bin/time"
REF = "latest"
KEEP_SUB = "### Where the unpack time goes"

# Cold-create tools, in the order of the tables.
PAR, SEQ, CACHED = "strata parallel", "strata sequential", "strata cached"
BPAR, BCACHED = "strata-before parallel", "strata-before cached"
UMOCI, TAR = "umoci unpack", "GNU tar -xzf"
PULL, PRUN, PODMAN = "podman pull", "podman run", "podman pull+run"


def log(*a):
    print("bench-layers:", *a, file=sys.stderr, flush=True)


def run(cmd, cwd=None, env=None, rss=False, stdout=None):
    """Runs cmd; returns (wall_s, cpu_s, peak_rss_kib). Raises on a non-zero exit.

    With rss, cmd runs under GNU time, whose %M is the peak RSS of cmd (and
    the children it waited for); without it, the RSS is 0. (wait4's own
    ru_maxrss of a child forked from Python would start at Python's size.)
    stdout: a path to write cmd's stdout to.
    """
    # stderr to a file: a created container keeps strata's stdio open.
    with tempfile.TemporaryFile() as errf, tempfile.NamedTemporaryFile(mode="r") as rssf:
        if rss:
            cmd = [GNU_TIME, "-f", "%M", "-o", rssf.name] + list(cmd)
        out = open(stdout, "wb") if stdout else subprocess.DEVNULL
        try:
            t0 = time.perf_counter()
            p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=errf, cwd=cwd, env=env,
                                 start_new_session=True)
            # A hung run is killed with its process group (not only the
            # `time` wrapper), and fails.
            killer = threading.Timer(TIMEOUT, lambda: os.killpg(p.pid, 9))
            killer.start()
            _, status, ru = os.wait4(p.pid, 0)
            killer.cancel()
            wall = time.perf_counter() - t0
        finally:
            if stdout:
                out.close()
        rc = os.waitstatus_to_exitcode(status)
        p.returncode = rc
        if rc != 0:
            errf.seek(0)
            raise RuntimeError(f"{' '.join(cmd)}: exit {rc}: {errf.read().decode(errors='replace').strip()[:400]}")
        peak = 0
        if rss:
            lines = rssf.read().strip().splitlines()
            peak = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return wall, ru.ru_utime + ru.ru_stime, peak


def quiet(cmd, **kw):
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, **kw)


def rmtree(path):
    if os.path.lexists(path):
        shutil.rmtree(path)


def mounts_under(path):
    """Mount points at or below path in this mount namespace, deepest first."""
    path = os.path.realpath(path)
    found = []
    for line in open("/proc/self/mountinfo"):
        mp = line.split()[4].encode().decode("unicode_escape")
        if mp == path or mp.startswith(path + "/"):
            found.append(mp)
    return sorted(found, key=len, reverse=True)


def umount_under(path, including=False):
    """Unmounts what is mounted below path (and path itself if including)."""
    for mp in mounts_under(path):
        if mp == os.path.realpath(path) and not including:
            continue
        if subprocess.run(["umount", mp], stderr=subprocess.DEVNULL).returncode != 0:
            subprocess.run(["umount", "-l", mp])


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

    def __init__(self, name, layout, label=None):
        self.name = name
        self.label = label or name
        self.layout = layout
        index = json.load(open(os.path.join(layout, "index.json")))
        desc = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == REF][0]
        manifest = json.load(open(self.blob(desc["digest"])))
        self.layers = [self.blob(l["digest"]) for l in manifest["layers"]]
        self.per_layer = []  # (compressed, uncompressed, entries)
        for b in self.layers:
            size = 0
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            with open(b, "rb") as f:
                while chunk := f.read(1 << 20):
                    size += len(d.decompress(chunk))
                size += len(d.flush())
            with tarfile.open(b, "r|gz") as t:
                entries = sum(1 for _ in t)
            self.per_layer.append((os.path.getsize(b), size, entries))
        self.compressed = sum(x[0] for x in self.per_layer)
        self.uncompressed = sum(x[1] for x in self.per_layer)
        self.entries = sum(x[2] for x in self.per_layer)

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
        self.samples = {}  # key -> list of (wall, cpu, peak_rss_kib)
        self.podman = shutil.which("podman")
        self.podman_failed = None
        self.podman_dirs = set()

    def cid(self):
        self.seq += 1
        return f"bench-layers-{os.getpid()}-{self.seq}"

    def strata(self, *args, store=None, binary=None):
        cmd = [binary or STRATA, "--root", self.root]
        if store:
            cmd += ["--store", store]
        return cmd + list(args)

    def record(self, key, sample):
        self.samples.setdefault(key, []).append(tuple(sample))

    def scratch(self, tag):
        self.seq += 1
        return os.path.join(self.base, f"{tag}-{self.seq}")

    # --- cold create ---------------------------------------------------------
    def _strata_cold(self, img, keep, jobs, binary=None):
        """A fresh store, then the timed first create; with jobs None (the
        default, parallel) also a timed create with the layers cached.
        binary: STRATA_BEFORE's build instead of STRATA's."""
        env = dict(os.environ)
        env.pop("STRATA_UNPACK_JOBS", None)
        if jobs is not None:
            env["STRATA_UNPACK_JOBS"] = str(jobs)
        store, bundle = self.scratch("store"), self.scratch("bundle")
        st = lambda *a: self.strata(*a, store=store, binary=binary)
        quiet(st("bundle", "--image", img.ref, bundle))
        try:
            cid = self.cid()
            s = run(st("create", "--bundle", bundle, cid), env=env, rss=True)
            quiet(st("delete", "--force", cid))
            c = None
            if jobs is None:
                cid = self.cid()
                c = run(st("create", "--bundle", bundle, cid), env=env)
                quiet(st("delete", "--force", cid))
            left = os.listdir(os.path.join(store, "containers")) + os.listdir(os.path.join(store, "tmp"))
            if left:
                log(f"strata left in the store after delete: {left}")
            if keep:
                self.record(f"{img.name}: {(BPAR if binary else PAR) if jobs is None else SEQ}", s)
                if c:
                    self.record(f"{img.name}: {BCACHED if binary else CACHED}", c)
        finally:
            rmtree(store)
            rmtree(bundle)

    def c_par(self, img, keep):
        self._strata_cold(img, keep, None)

    def c_seq(self, img, keep):
        self._strata_cold(img, keep, 1)

    def c_before(self, img, keep):
        if BEFORE:
            self._strata_cold(img, keep, None, binary=BEFORE)

    def c_umoci(self, img, keep):
        d = self.scratch("umoci")
        try:
            s = run(["umoci", "unpack", "--image", img.ref, d], rss=True)
            if keep:
                self.record(f"{img.name}: {UMOCI}", s)
        finally:
            rmtree(d)

    def c_tar(self, img, keep):
        d = self.scratch("tar")
        os.mkdir(d)
        try:
            wall = cpu = 0.0
            peak = 0
            for b in img.layers:
                w, c, m = run(["tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xzf", b, "-C", d], rss=True)
                wall, cpu, peak = wall + w, cpu + c, max(peak, m)
            if keep:
                self.record(f"{img.name}: {TAR}", (wall, cpu, peak))
        finally:
            rmtree(d)

    def podman_cmd(self, d, *args):
        # A nested private mount namespace without the cgroup2 mount of the
        # hybrid layout, which crun 1.8.1 refuses; the podman store is d.
        return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'if mountpoint -q /sys/fs/cgroup/unified; then umount /sys/fs/cgroup/unified; fi; exec "$@"', "sh",
                self.podman, "--root", os.path.join(d, "root"), "--runroot", os.path.join(d, "run"),
                "--tmpdir", os.path.join(d, "tmp"), "--storage-driver", PODMAN_DRIVER,
                "--cgroup-manager", "cgroupfs", "--events-backend", "none"] + list(args)

    def podman_clean(self, d):
        if not os.path.isdir(d):
            return
        if os.path.isdir(os.path.join(d, "root")):
            subprocess.run(self.podman_cmd(d, "rmi", "-a", "-f"), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=TIMEOUT)
        umount_under(d)
        rmtree(d)
        self.podman_dirs.discard(d)

    def c_podman(self, img, keep):
        if not self.podman or self.podman_failed:
            return
        d = self.scratch("podman")
        self.podman_dirs.add(d)
        os.makedirs(os.path.join(d, "tmp"))
        try:
            idf = os.path.join(d, "image-id")
            p = run(self.podman_cmd(d, "pull", "--quiet", f"oci:{img.ref}"), rss=True, stdout=idf)
            image = open(idf).read().split()[-1]
            # The ulimits: the defaults (nofile 1048576) are above this root's
            # hard limits, which crun then fails to set.
            r = run(self.podman_cmd(d, "run", "--rm", "--pull", "never", "--network", "none",
                                    "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=4096:4096", image, "true"),
                    rss=True)
            if keep:
                self.record(f"{img.name}: {PULL}", p)
                self.record(f"{img.name}: {PRUN}", r)
                self.record(f"{img.name}: {PODMAN}", (p[0] + r[0], p[1] + r[1], max(p[2], r[2])))
        except (RuntimeError, IndexError, OSError) as e:
            self.podman_failed = str(e) or type(e).__name__
            log(f"podman failed, left out from now on: {e}")
        finally:
            self.podman_clean(d)

    def cold(self, imgs):
        tools = [self.c_par, self.c_seq, self.c_before, self.c_umoci, self.c_tar, self.c_podman]
        t0 = time.perf_counter()
        for i in range(WARM + N):
            for img in imgs:
                for fn in tools:
                    fn(img, i >= WARM)
            tools = tools[1:] + tools[:1]
            log(f"cold create round {i + 1}/{WARM + N} ({'warm-up' if i < WARM else 'measured'}), "
                f"{time.perf_counter() - t0:.0f}s")
        log(f"cold create: done in {time.perf_counter() - t0:.1f}s")

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

    def c_once(self, key, bundle, store, keep, binary=None):
        cid = self.cid()
        cw, cc, _ = run(self.strata("create", "--bundle", bundle, cid, store=store, binary=binary))
        dw, dc, _ = run(self.strata("delete", "--force", cid, store=store, binary=binary))
        if keep:
            self.record(key + " create", (cw, cc, 0))
            self.record(key + " delete", (dw, dc, 0))
            self.record(key + " create+delete", (cw + dw, cc + dc, 0))

    def create_compare(self, imgs):
        store = os.path.join(self.base, "store-create")
        variants = []
        for img in imgs:
            ib, pb = self.prepare(img, store)
            variants.append((f"{img.name} cached layers", ib, None))
            variants.append((f"{img.name} prepared rootfs", pb, None))
            if BEFORE:
                variants.append((f"{img.name} cached layers, strata-before", ib, BEFORE))
        t0 = time.perf_counter()
        warm = max(WARM, 2)
        for i in range(warm + CREATE_N):
            for key, b, binary in variants:
                self.c_once(key, b, store, i >= warm, binary)
            variants = variants[1:] + variants[:1]
        left = os.listdir(os.path.join(store, "containers")) + os.listdir(os.path.join(store, "tmp"))
        if left:
            log(f"strata left in the store after delete: {left}")
        log(f"create comparison: done in {time.perf_counter() - t0:.1f}s")

    def cleanup(self):
        """Deletes any container still in the state dir and any podman store
        left by an interruption; reports cgroups left behind."""
        import glob
        for d in list(self.podman_dirs):
            log(f"cleanup: removing podman store {d}")
            try:
                self.podman_clean(d)
            except Exception as e:
                log(f"cleanup: {d}: {e}")
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


def fmt(x, spec=".0f"):
    return "n/a" if x != x else format(x, spec)


def report(b, imgs, bb, info):
    """imgs: the cold-create images, the debootstrap one first."""
    deb = imgs[0]
    s = b.samples
    w = lambda k: med([x[0] for x in s.get(k, [])])
    c = lambda k: med([x[1] for x in s.get(k, [])])
    m = lambda k: med([x[2] for x in s.get(k, [])]) / 1024
    MB = 1e6
    L = []
    L.append("## Layers\n")
    L.append(f"Measured by `hack/bench-layers` (BENCH_N={N}) on {time.strftime('%Y-%m-%d')}: {platform.node()}, "
             f"{info['cpu']}, {os.cpu_count()} CPUs (`nproc`), kernel {platform.release()}; 1-minute load average "
             f"{info['load']} at the start and {loadavg()} at the end (the machine is shared). Everything runs on a "
             "private tmpfs in a private mount namespace, so no disk I/O is timed.\n")
    L.append("Versions: " + "; ".join(f"{k}: `{v}`" for k, v in info["versions"].items()) + "\n")
    L.append("The images:\n")
    L.append(f"- **debootstrap**, from `hack/mkimage-debootstrap` (Debian bookworm "
             f"`debootstrap --variant=minbase`): {len(deb.layers)} gzip layers, {deb.compressed / MB:.1f} MB compressed, "
             f"{deb.uncompressed / MB:.1f} MB of uncompressed layer tar, {deb.entries} tar entries. "
             "Layer 1 is the rootfs without /usr/share and /var/lib/apt, layer 2 /usr/share, layer 3 "
             "/var/lib/apt and two whiteouts (`/etc/.wh.motd`, `/usr/share/doc/.wh.debconf`); uncompressed "
             + ", ".join(f"{x[1] / MB:.1f}" for x in deb.per_layer) + " MB.")
    for img in imgs[1:]:
        L.append(f"- **{img.label}**, from `hack/mkimage-layers OUT {len(img.layers)}`: the same debootstrap rootfs "
                 "without /var/lib/apt/lists and the .debs in /var/cache/apt (as `apt-get clean` and "
                 "`rm -rf /var/lib/apt/lists/*` leave it), " +
                 (f"cut by path into {len(img.layers)} gzip layers of about the same uncompressed size: "
                  if len(img.layers) > 1 else "in 1 gzip layer: ") +
                 f"{img.compressed / MB:.1f} MB compressed, {img.uncompressed / MB:.1f} MB uncompressed, "
                 f"{img.entries} tar entries" +
                 (("; per layer " + ", ".join(f"{x[0] / MB:.1f}" for x in img.per_layer) + " MB compressed, " +
                   ", ".join(f"{x[1] / MB:.1f}" for x in img.per_layer) + " MB uncompressed.")
                  if len(img.layers) > 1 else "."))
    L.append("")
    L.append("MB/s is uncompressed layer data (MB = 10^6 bytes) over the median wall time.\n")

    # --- cold create -------------------------------------------------------
    jobs = len(os.sched_getaffinity(0))
    L.append("### Cold create: parallel against sequential unpack\n")
    L.append(f"An empty store every time. {N} measured rounds after {WARM} warm-up rounds; in each round every image, "
             "and for each image every tool once, the order of the tools rotating. Medians (p25-p75 when there are "
             "4 or more rounds). CPU is user+sys of the process and the children it waited for; peak RSS is "
             f"GNU time's `%M`. \"strata parallel\" is the default ({jobs} unpack workers here, one per core, "
             "at most one per missing layer); \"strata sequential\" is `STRATA_UNPACK_JOBS=1`, the unpack as it was "
             "before. Both are `strata create` on a fresh store (`strata bundle --image` first, not timed). "
             f"podman: `podman pull oci:LAYOUT:{REF}` into an empty private store (`--root`/`--runroot` in a fresh "
             f"dir, storage driver `{PODMAN_DRIVER}`), then `podman run --rm --network none IMAGE true`.\n")
    if b.podman_failed:
        L.append(f"podman failed, and is left out after that: `{b.podman_failed[:300]}`\n")
    elif not b.podman:
        L.append("podman is not installed: not measured.\n")
    head = ["strata parallel", "strata sequential", "sequential / parallel", "umoci unpack", "GNU tar", "podman pull+run"]
    L.append("Wall time, ms:\n")
    L.append("| image | layers | uncompressed | " + " | ".join(head) + " |")
    L.append("|---|---|---|" + "---|" * len(head))

    def cell(k):
        xs = [x[0] * 1000 for x in s.get(k, [])]
        if not xs:
            return "n/a"
        q1, q3 = quartiles(xs)
        return f"{med(xs):.0f}" + ("" if q1 != q1 else f" ({q1:.0f}-{q3:.0f})")

    ratios = {}
    for img in imgs:
        k = lambda t: f"{img.name}: {t}"
        r = w(k(SEQ)) / w(k(PAR))
        paired = [sq[0] / pa[0] for sq, pa in zip(s.get(k(SEQ), []), s.get(k(PAR), []))]
        ratios[img.name] = (r, med(paired), w(k(SEQ)) - w(k(PAR)))
        L.append(f"| {img.label} | {len(img.layers)} | {img.uncompressed / MB:.1f} MB | {cell(k(PAR))} | "
                 f"{cell(k(SEQ))} | **{fmt(r, '.2f')}** | {cell(k(UMOCI))} | {cell(k(TAR))} | {cell(k(PODMAN))} |")
    L.append("")
    L.append("\"sequential / parallel\" is the ratio of the medians; the median of the per-round ratios (each round "
             "runs both) is " + "; ".join(f"{img.label}: {fmt(ratios[img.name][1], '.2f')}" for img in imgs) + ".\n")
    L.append(f"![cold create, median wall time]({SVG})\n")
    L.append("Details, medians:\n")
    L.append("| image | what | wall (ms) | CPU (ms) | peak RSS (MiB) | MB/s | wall / strata parallel |")
    L.append("|---|---|---|---|---|---|---|")
    rows = [(PAR, "`strata create`, fresh store"), (SEQ, "`strata create`, fresh store, `STRATA_UNPACK_JOBS=1`"),
            (CACHED, "`strata create`, layers already in the store"), (UMOCI, "`umoci unpack`"),
            (TAR, "`tar -xzf` of each blob in order"), (PULL, "`podman pull oci:`, empty store"),
            (PRUN, "`podman run --rm IMAGE true`, after the pull"), (PODMAN, "podman pull + run"),
            (BPAR, "`strata create` of the earlier build (`STRATA_BEFORE`), fresh store"),
            (BCACHED, "`strata create` of the earlier build, layers already in the store")]
    for img in imgs:
        ref = w(f"{img.name}: {PAR}")
        for t, label in rows:
            k = f"{img.name}: {t}"
            if k not in s:
                continue
            rate = "" if t in (CACHED, BCACHED, PRUN) else fmt(img.uncompressed / MB / w(k))
            rss = "" if t in (CACHED, BCACHED) else f"{m(k):.1f}"
            L.append(f"| {img.label} | {label} | {w(k) * 1000:.0f} | {c(k) * 1000:.0f} | {rss} | {rate} | "
                     f"{w(k) / ref:.2f} |")
    L.append("")
    L.append("Peak RSS of strata's cold create, parallel / sequential: " + "; ".join(
        f"{img.label}: {m(f'{img.name}: {PAR}'):.1f} / {m(f'{img.name}: {SEQ}'):.1f} MiB" for img in imgs) + ".\n")
    many = next((img for img in imgs if len(img.layers) == NLAYERS and img is not deb), None)
    one = next((img for img in imgs if len(img.layers) == 1), None)
    L.append("Targets:\n")
    if many:
        r = ratios[many.name][0]
        L.append(f"- The {len(many.layers)}-layer cold create at least 1.7x faster in parallel than sequential "
                 f"on {jobs} cores: sequential/parallel = {fmt(r, '.2f')}: **{'met' if r >= 1.7 else 'not met'}**.")
    if one:
        r, _, d = ratios[one.name]
        L.append(f"- A single layer no slower in parallel: sequential/parallel = {fmt(r, '.2f')} "
                 f"({d * 1000:+.0f} ms): **{'met' if r >= 1 else 'not met'}**.")
    L.append("")
    L.append("Per-round wall times (ms), in round order:\n")
    L.append("| image | what | " + " | ".join(f"r{i + 1}" for i in range(N)) + " |")
    L.append("|---|---|" + "---|" * N)
    for img in imgs:
        for t, _ in rows:
            k = f"{img.name}: {t}"
            if k in s:
                L.append(f"| {img.label} | {t} | " + " | ".join(f"{x[0] * 1000:.0f}" for x in s[k]) + " |")
    L.append("")
    L.append("Notes: strata's time includes the whole `create` (namespaces, cgroups, the init layer, the overlay "
             "mount, init waiting on `exec.fifo`) and checking every blob's digest and diff_id; podman's `run` also "
             "starts the container, waits for it and removes it, and podman runs in a nested mount namespace "
             "(`unshare` + `sh`, to unmount /sys/fs/cgroup/unified, which crun 1.8.1 refuses), with "
             "`--ulimit nofile=1024:1024 --ulimit nproc=4096:4096` (its defaults are above this root's hard limits); "
             "podman's CPU and RSS are those of the podman processes, not of conmon or crun. umoci's time includes "
             "writing its mtree manifest of the unpacked rootfs (which hashes every file); GNU tar decompresses in a "
             "separate `gzip -d` process, i.e. on the second core, and does not handle whiteouts. tar runs with "
             "`--numeric-owner --xattrs --xattrs-include=*` so that it restores the same metadata as the others. "
             "With one layer there is one unpack worker either way; in parallel mode (more than one core) each layer also "
             "inflates and hashes on a thread of its own, ahead of the tar reader, and that is the gain for a single layer. "
             "`STRATA_UNPACK_JOBS=1` does neither. "
             "Every timed process but the cached create runs under `/usr/bin/time` (about 1 ms).\n")

    # --- the debootstrap image, against the older targets -------------------
    L.append("### Unpack\n")
    L.append(f"The debootstrap image, from the rounds above. CPU is user+sys of the process and the children it "
             "waited for.\n")
    L.append("| what | wall (ms) | CPU (ms) | MB/s | wall / strata unpack |")
    L.append("|---|---|---|---|---|")
    dk = lambda t: f"{deb.name}: {t}"
    ref = w(dk(PAR))
    nl = len(deb.layers)
    urows = [
        (PAR, f"`strata create`, fresh store: verify + unpack {nl} layers + create"),
        (SEQ, "the same, `STRATA_UNPACK_JOBS=1`"),
        (CACHED, "`strata create`, layers already in the store"),
        (UMOCI, "`umoci unpack --image LAYOUT:REF DIR`"),
        (TAR, f"`tar -xzf` of the {nl} blobs in order (no whiteouts)"),
    ]
    for t, label in urows:
        k = dk(t)
        rate = "" if t == CACHED else fmt(deb.uncompressed / MB / w(k))
        L.append(f"| {label} | {w(k) * 1000:.0f} | {c(k) * 1000:.0f} | {rate} | {w(k) / ref:.2f} |")
    unpack_only = ref - w(dk(CACHED))
    L.append("")
    L.append(f"strata's unpack alone (first create minus cached create): {unpack_only * 1000:.0f} ms, "
             f"{deb.uncompressed / MB / unpack_only:.0f} MB/s.\n")
    r_umoci = w(dk(UMOCI)) / ref
    r_tar = w(dk(TAR)) / ref
    L.append("Targets:\n")
    L.append(f"- strata's first create at least 2x faster than `umoci unpack`: umoci/strata = {r_umoci:.2f}: "
             f"**{'met' if r_umoci >= 2 else 'not met'}**.")
    L.append(f"- strata's first create at least as fast as GNU tar: tar/strata = {r_tar:.2f}: "
             f"**{'met' if r_tar >= 1 else 'not met'}**.")
    L.append("")

    # --- create from cached layers ------------------------------------------
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
        for v in ("cached layers", "prepared rootfs") + (("cached layers, strata-before",) if BEFORE else ()):
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
    if BEFORE:
        L.append("### Before and after\n")
        L.append(f"`strata-before` is `STRATA_BEFORE` ({info['versions'].get('strata-before', '')}), an earlier "
                 "build run in the same rounds as this one. Medians, ms; the ratio is after/before.\n")
        L.append("| image | what | before | after | after / before |")
        L.append("|---|---|---|---|---|")
        pairs = []
        for img in imgs:
            pairs += [(img, "cold create, parallel", f"{img.name}: {BPAR}", f"{img.name}: {PAR}"),
                      (img, "create, layers cached", f"{img.name}: {BCACHED}", f"{img.name}: {CACHED}")]
        for img in (bb, deb):
            pairs.append((img, "create+delete, cached layers", f"{img.name} cached layers, strata-before create+delete",
                          f"{img.name} cached layers create+delete"))
        for img, what, kb, ka in pairs:
            if kb in s and ka in s:
                L.append(f"| {img.name} | {what} | {w(kb) * 1000:.1f} | {w(ka) * 1000:.1f} | {w(ka) / w(kb):.2f} |")
        L.append("")
    return "\n".join(L) + "\n"


def svg(b, imgs):
    """A bar chart of the cold-create medians (one shared scale) and of
    strata's peak RSS, hand-written as hack/bench.py's."""
    s = b.samples
    w = lambda k: med([x[0] for x in s.get(k, [])]) * 1000
    m = lambda k: med([x[2] for x in s.get(k, [])]) / 1024
    esc = html.escape
    bars = [(PAR, "#2a7"), (SEQ, "#8c8"), (UMOCI, "#c72"), (TAR, "#27c"), (PODMAN, "#a4c")]
    W, left, right, barh, step = 860, 150, 250, 12, 14
    span = W - left - right
    top = max([w(f"{img.name}: {t}") for img in imgs for t, _ in bars if f"{img.name}: {t}" in s] or [1])
    rtop = max([m(f"{img.name}: {t}") for img in imgs for t in (PAR, SEQ) if f"{img.name}: {t}" in s] or [1])
    out = []
    y = 20
    out.append(f'<text x="10" y="{y}" font-size="14">cold create (empty store), median wall time (ms), lower is better '
               f'({N} rounds, {os.cpu_count()} CPUs)</text>')
    y += 20
    for img in imgs:
        n = sum(1 for t, _ in bars if f"{img.name}: {t}" in s)
        out.append(f'<text x="10" y="{y + 12}">{esc(img.label)}</text>')
        sub = f"{img.uncompressed / 1e6:.0f} MB"
        if "layer" not in img.label:
            sub = f"{len(img.layers)} layer{'s' if len(img.layers) > 1 else ''}, {sub}"
        out.append(f'<text x="10" y="{y + 26}" fill="#666">{esc(sub)}</text>')
        for t, color in bars:
            k = f"{img.name}: {t}"
            if k not in s:
                continue
            v = w(k)
            label = f"{t} {v:.0f}"
            if t == PODMAN:
                # pull, then run, stacked
                pv = w(f"{img.name}: {PULL}")
                pw = span * pv / top
                bw = span * v / top
                out.append(f'<rect x="{left}" y="{y}" width="{pw:.1f}" height="{barh}" fill="{color}"/>')
                out.append(f'<rect x="{left + pw:.1f}" y="{y}" width="{max(bw - pw, 0):.1f}" height="{barh}" fill="#dbd"/>')
                label = f"podman ({PODMAN_DRIVER}) pull {pv:.0f} + run {v - pv:.0f}"
            else:
                bw = span * v / top
                out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{barh}" fill="{color}"/>')
                if t == SEQ:
                    r = v / w(f"{img.name}: {PAR}")
                    label += f" (sequential / parallel {r:.2f})"
            out.append(f'<text x="{left + bw + 4:.1f}" y="{y + 10}">{esc(label)}</text>')
            y += step
        y += max(0, 2 * step - n * step) + 12
    y += 10
    out.append(f'<text x="10" y="{y}" font-size="14">peak RSS of strata create, cold (MiB)</text>')
    y += 12
    for img in imgs:
        out.append(f'<text x="10" y="{y + 10}">{esc(img.label)}</text>')
        for t, color in bars[:2]:
            k = f"{img.name}: {t}"
            if k not in s:
                continue
            v = m(k)
            bw = span * v / rtop
            out.append(f'<rect x="{left}" y="{y}" width="{bw:.1f}" height="{barh}" fill="{color}"/>')
            out.append(f'<text x="{left + bw + 4:.1f}" y="{y + 10}">{esc(t)} {v:.1f}</text>')
            y += step
        y += 8
    y += 4
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{y}" font-family="sans-serif" font-size="12">\n'
            f'<rect width="{W}" height="{y}" fill="#fff"/>')
    return head + "\n" + "\n".join(out) + "\n</svg>\n"


def write_section(text):
    path = DOC
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
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
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"hack/bench-layers: need {GNU_TIME} (apt-get install time)")
    # Letters, digits and dashes only: podman names an `oci:` image after its
    # path, and a path component ending in `_` (as mkdtemp's may) is not a
    # valid reference.
    base = os.path.join(tempfile.gettempdir(), f"strata-bench-layers-{os.getpid()}")
    os.mkdir(base, 0o700)
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
        if BEFORE:
            # STRATA_BEFORE_LABEL names the build (a commit, say): the
            # version line of two builds of one release is the same.
            label = os.environ.get("STRATA_BEFORE_LABEL")
            info["versions"]["strata-before"] = first_line([BEFORE, "--version"]) + (f", {label}" if label else "")
        if b.podman:
            info["versions"].update({
                "podman": first_line([b.podman, "--version"]),
                "crun": first_line(["crun", "--version"]),
                "conmon": first_line(["conmon", "--version"]),
            })
        else:
            log("podman is not installed: left out")
        log(f"building the images in {base}")
        env = dict(os.environ, TMPDIR=base)
        quiet([os.path.join(HERE, "mkimage-debootstrap"), os.path.join(base, "deb"), REF], env=env)
        quiet([os.path.join(HERE, "mkimage-layers"), os.path.join(base, f"layers{NLAYERS}"), str(NLAYERS), REF], env=env)
        if NLAYERS != 1:
            quiet([os.path.join(HERE, "mkimage-layers"), os.path.join(base, "layers1"), "1", REF], env=env)
        quiet([os.path.join(HERE, "mkimage-busybox"), os.path.join(base, "busybox"), REF], env=env)
        deb = Image("debootstrap", os.path.join(base, "deb"))
        many = Image(f"layers{NLAYERS}", os.path.join(base, f"layers{NLAYERS}"), f"{NLAYERS} layer{'s' if NLAYERS > 1 else ''}")
        imgs = [deb, many]
        if NLAYERS != 1:
            imgs.append(Image("layers1", os.path.join(base, "layers1"), "1 layer"))
        bb = Image("busybox", os.path.join(base, "busybox"))
        for img in imgs:
            log(f"{img.label} image: {len(img.layers)} layers, {img.compressed} bytes compressed, "
                f"{img.uncompressed} uncompressed, {img.entries} entries")
        b.cold(imgs)
        b.create_compare([bb, deb])
        if os.environ.get("BENCH_RAW"):
            json.dump(b.samples, open(os.environ["BENCH_RAW"], "w"), indent=1)
        text = report(b, imgs, bb, info)
        print(text)
        log(f"wrote {write_section(text)}")
        svg_path = os.path.join(os.path.dirname(os.path.abspath(DOC)), SVG)
        open(svg_path, "w").write(svg(b, imgs))
        log(f"wrote {svg_path}")
    finally:
        b.cleanup()
        umount_under(base)
        subprocess.run(["umount", base])
        os.rmdir(base)


if __name__ == "__main__":
    main()
