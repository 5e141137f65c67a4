//! Image-backed rootfs: bundles made by `strata bundle --image` from the
//! multi-layer busybox image of hack/mkimage-busybox, run for real.

use crate::common::Bounded;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{STRATA, stderr, stdout};
use crate::need_root;

/// An image layout, a layer store and a state root, all private to one test.
pub(crate) struct Image {
    pub base: PathBuf,
    pub layout: PathBuf,
    pub store: PathBuf,
    pub root: PathBuf,
}

impl Image {
    pub fn new(name: &str) -> Image {
        let base = std::env::temp_dir().join(format!("strata-img-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let layout = base.join("layout");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mkimage-busybox");
        let out = Command::new(script).arg(&layout).arg("latest").output_within();
        assert!(out.status.success(), "mkimage-busybox: {}", stderr(&out));
        Image { store: base.join("store"), root: base.join("state"), layout, base }
    }

    pub fn strata(&self) -> Command {
        let mut c = Command::new(&*STRATA);
        c.arg("--root").arg(&self.root).arg("--store").arg(&self.store);
        c
    }

    /// `strata bundle --image` then our own process args.
    pub fn bundle(&self, name: &str, reference: &str, script: &str) -> PathBuf {
        let dir = self.base.join(name);
        let out = self.strata().args(["bundle", "--image"]).arg(format!("{}:{reference}", self.layout.display())).arg(&dir).output_within();
        assert!(out.status.success(), "bundle: {}", stderr(&out));
        let path = dir.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["args"] = json!(["sh", "-c", script]);
        cfg["hostname"] = json!(name);
        std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        dir
    }

    pub fn run(&self, bundle: &Path, id: &str) -> Output {
        self.strata().args(["run", "--bundle"]).arg(bundle).arg(id).stdin(Stdio::null()).output_within()
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        self.strata().args(args).stdin(Stdio::null()).output_within()
    }

    fn layer_dirs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.store.join("layers")).unwrap().flatten().map(|e| e.path()).collect();
        v.sort();
        v
    }

    pub fn containers_in_store(&self) -> usize {
        std::fs::read_dir(self.store.join("containers")).map(|r| r.count()).unwrap_or(0)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Ok(ids) = std::fs::read_dir(&self.root) {
            for id in ids.flatten() {
                let _ = self.strata().args(["delete", "--force"]).arg(id.file_name()).output();
            }
        }
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn tree_digest(dir: &Path) -> String {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("cd {} && find . -printf '%p %s %m %y\\n' | sort | sha256sum", dir.display()))
        .output_within();
    stdout(&out)
}

#[test]
fn layers_whiteouts_opaque_dirs_and_init_layer() {
    need_root!();
    let img = Image::new("view");
    let b = img.bundle(
        "box1",
        "latest",
        "cat /etc/motd; ls /data; ls /opq; cat /etc/hostname; grep box1 /etc/hosts; readlink /etc/mtab; test -e /etc/resolv.conf && echo resolv; grep ' / ' /proc/mounts | cut -d' ' -f3",
    );
    let out = img.run(&b, "v1");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "layer 3 motd", "the top layer's file wins: {text}");
    assert_eq!(lines[1], "b", "/data/a was whited out: {text}");
    assert_eq!(lines[2], "z", "the opaque /opq hides the lower files: {text}");
    assert_eq!(lines[3], "box1");
    assert!(lines[4].contains("box1"), "{text}");
    assert_eq!(lines[5], "/proc/mounts");
    assert_eq!(lines[6], "resolv");
    assert_eq!(lines[7], "overlay");
    // The overlay lived in the container's mount namespace only.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(img.store.to_str().unwrap()), "overlay leaked to the host");
    assert_eq!(img.containers_in_store(), 0, "run left the container's layers behind");
    assert_eq!(img.layer_dirs().len(), 3);
}

#[test]
fn containers_share_layers_and_keep_their_writes_apart() {
    need_root!();
    let img = Image::new("share");
    let writer = img.bundle("w", "latest", "echo mine > /data/b; rm /etc/motd; echo x > /newfile; sleep 30");
    let reader = img.bundle("r", "latest", "sleep 30");
    for (b, id) in [(&writer, "w1"), (&reader, "r1")] {
        let out = img
            .strata()
            .args(["create", "--bundle"])
            .arg(b)
            .arg(id)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status_within();
        assert!(out.success(), "create {id}");
    }
    let layers = img.layer_dirs();
    assert_eq!(layers.len(), 3, "each layer is unpacked once for both containers");
    let before: Vec<String> = layers.iter().map(|l| tree_digest(l)).collect();
    assert!(img.cmd(&["start", "w1"]).status.success());
    assert!(img.cmd(&["start", "r1"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let seen = stdout(&img.cmd(&["exec", "r1", "sh", "-c", "cat /data/b; cat /etc/motd; ls /newfile 2>&1 | grep -c 'No such'"]));
    assert_eq!(seen, "b\nlayer 3 motd\n1\n", "the reader saw the writer's changes");
    let mine = stdout(&img.cmd(&["exec", "w1", "sh", "-c", "cat /data/b /newfile; cat /etc/motd 2>/dev/null || echo gone"]));
    assert_eq!(mine, "mine\nx\ngone\n");
    let after: Vec<String> = layers.iter().map(|l| tree_digest(l)).collect();
    assert_eq!(before, after, "an image layer changed");
    let listing = stdout(&img.cmd(&["layers"]));
    assert!(listing.lines().skip(1).all(|l| l.trim_end().ends_with(" 2")), "{listing}");
    let df = stdout(&img.cmd(&["df"]));
    assert!(df.contains("w1") && df.contains("r1"), "{df}");
    for id in ["w1", "r1"] {
        assert!(img.cmd(&["delete", "--force", id]).status.success());
    }
    assert_eq!(img.containers_in_store(), 0, "delete left per-container layers");
    assert_eq!(img.layer_dirs().len(), 3, "delete removed a shared layer");
    // Unused now: prune removes them.
    assert!(img.cmd(&["layers", "prune"]).status.success());
    assert_eq!(img.layer_dirs().len(), 0);
}

#[test]
fn concurrent_creates_unpack_each_layer_once() {
    need_root!();
    let img = Image::new("race");
    let bundles: Vec<PathBuf> = (0..4).map(|i| img.bundle(&format!("c{i}"), "latest", "true")).collect();
    // stderr to files: each created container keeps it open until it runs.
    let children: Vec<_> = bundles
        .iter()
        .enumerate()
        .map(|(i, b)| {
            let err = std::fs::File::create(img.base.join(format!("c{i}.err"))).unwrap();
            img.strata()
                .args(["create", "--bundle"])
                .arg(b)
                .arg(format!("c{i}"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err)
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, mut c) in children.into_iter().enumerate() {
        let status = c.wait().unwrap();
        assert!(status.success(), "{}", std::fs::read_to_string(img.base.join(format!("c{i}.err"))).unwrap());
    }
    assert_eq!(img.layer_dirs().len(), 3);
    assert!(std::fs::read_dir(img.store.join("tmp")).map(|r| r.count() == 0).unwrap_or(true), "temp dirs left");
    for i in 0..4 {
        assert!(img.cmd(&["delete", "--force", &format!("c{i}")]).status.success());
    }
    assert_eq!(img.containers_in_store(), 0);
}

#[test]
fn commit_round_trips() {
    need_root!();
    let img = Image::new("commit");
    let b = img.bundle("src", "latest", "echo committed > /data/new; rm /data/b; mkdir -p /opq && echo q > /opq/q; true");
    let out = img
        .strata()
        .args(["run", "--detach", "--bundle"])
        .arg(&b)
        .arg("src1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status_within();
    assert!(out.success());
    for _ in 0..200 {
        if stdout(&img.cmd(&["state", "src1"])).contains("stopped") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let target = format!("{}:v2", img.layout.display());
    let out = img.cmd(&["commit", "src1", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(img.cmd(&["delete", "src1"]).status.success());
    let b2 = img.bundle("dst", "v2", "cat /data/new; ls /data; ls /opq");
    let out = img.run(&b2, "dst1");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "committed\nnew\nq\nz\n");
}

#[test]
fn bad_image_references_fail_cleanly() {
    need_root!();
    let img = Image::new("bad");
    let out = img.cmd(&["bundle", "--image", &format!("{}:nope", img.layout.display()), img.base.join("x").to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    // A blob that does not match its digest: create fails and leaves nothing.
    let b = img.bundle("corrupt", "latest", "true");
    let blobs = img.layout.join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs).unwrap().flatten().max_by_key(|e| e.metadata().unwrap().len()).unwrap().path();
    let mut data = std::fs::read(&biggest).unwrap();
    let mid = data.len() / 2;
    data[mid] ^= 0xff;
    std::fs::write(&biggest, data).unwrap();
    let out = img.strata().args(["create", "--bundle"]).arg(&b).arg("bad1").stdin(Stdio::null()).output_within();
    assert!(!out.status.success());
    let name = biggest.file_name().unwrap().to_string_lossy().into_owned();
    assert!(stderr(&out).contains(&name[..12]), "the error does not name the blob: {}", stderr(&out));
    assert!(!img.root.join("bad1").exists());
    assert_eq!(img.containers_in_store(), 0);
    let complete: Vec<PathBuf> = img.layer_dirs();
    assert!(complete.len() < 3, "a corrupt layer was stored");
    assert!(std::fs::read_dir(img.store.join("tmp")).map(|r| r.count() == 0).unwrap_or(true), "partial layer left in tmp");
}

/// A layout with uncompressed tar layers, written by the test itself.
fn write_layout(dir: &Path, layers: &[Vec<u8>]) {
    use sha2::{Digest, Sha256};
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> (String, usize) {
        let hex: String = Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(blobs.join(&hex), data).unwrap();
        (format!("sha256:{hex}"), data.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (d, n) = put(l);
        diff_ids.push(d.clone());
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}));
    }
    let config =
        json!({"architecture": "amd64", "os": "linux", "config": {"Cmd": ["sh"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cn) = put(&serde_json::to_vec(&config).unwrap());
    let manifest = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": descs});
    let (md, mn) = put(&serde_json::to_vec(&manifest).unwrap());
    let index = json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": mn,
        "annotations": {"org.opencontainers.image.ref.name": "t"}}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A tar with the given entries: (path, kind, data or link target). Paths
/// are written raw into the header, so hostile ones survive.
fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, kind, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_entry_type(*kind);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_mode(if *kind == tar::EntryType::Directory { 0o755 } else { 0o644 });
        if *kind == tar::EntryType::Symlink || *kind == tar::EntryType::Link {
            h.set_link_name(data).unwrap();
            h.set_size(0);
            h.set_cksum();
            b.append(&h, std::io::empty()).unwrap();
        } else {
            h.set_size(data.len() as u64);
            h.set_cksum();
            b.append(&h, data.as_bytes()).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn images_of_130_layers_mount() {
    need_root!();
    let img = Image::new("deep");
    let deep = img.base.join("deep");
    // Layer 0: busybox from the test image's first layer is not needed:
    // the bottom layer is a static busybox of our own.
    let bb = std::fs::read("/bin/busybox").unwrap();
    let mut base = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_path("bin/busybox").unwrap();
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    h.set_cksum();
    base.append(&h, bb.as_slice()).unwrap();
    let mut layers = vec![base.into_inner().unwrap()];
    for i in 1..130 {
        layers.push(tar_of(&[("l/", tar::EntryType::Directory, ""), (&format!("l/{i}"), tar::EntryType::Regular, "x")]));
    }
    write_layout(&deep, &layers);
    let out = img.cmd(&["bundle", "--image", &format!("{}:t", deep.display()), img.base.join("b").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let path = img.base.join("b/config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["process"]["args"] = json!(["/bin/busybox", "sh", "-c", "/bin/busybox ls /l | /bin/busybox wc -l; /bin/busybox cat /l/129"]);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = img.run(&img.base.join("b"), "deep1");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "129\nx");
}

#[test]
fn hostile_layers_are_refused() {
    need_root!();
    let img = Image::new("hostile");
    let outside = img.base.join("outside-target");
    std::fs::create_dir_all(&outside).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", tar_of(&[("../../../../tmp/strata-pwned", tar::EntryType::Regular, "pwned")])),
        (
            "symlink",
            tar_of(&[("escape", tar::EntryType::Symlink, outside.to_str().unwrap()), ("escape/pwned", tar::EntryType::Regular, "pwned")]),
        ),
        ("hardlink", tar_of(&[("hl", tar::EntryType::Link, "../../../../etc/passwd")])),
    ];
    for (name, layer) in cases {
        let dir = img.base.join(name);
        write_layout(&dir, &[layer]);
        let b = img.base.join(format!("{name}-bundle"));
        let out = img.cmd(&["bundle", "--image", &format!("{}:t", dir.display()), b.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let out = img.strata().args(["create", "--bundle"]).arg(&b).arg(name).stdin(Stdio::null()).output_within();
        assert!(!out.status.success(), "{name}: a hostile layer was accepted");
        let err = stderr(&out);
        assert!(err.contains("entry") && !err.contains("numeric field"), "{name}: {err}");
        assert!(!img.root.join(name).exists(), "{name}: state left");
    }
    assert!(!Path::new("/tmp/strata-pwned").exists());
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was written outside the layer");
    assert_eq!(img.containers_in_store(), 0);
    assert!(img.layer_dirs().is_empty(), "a hostile layer reached the store");
}

#[test]
fn unbounded_blobs_are_refused_at_once() {
    need_root!();
    // A layer blob that never ends (a symlink to /dev/zero, the manifest
    // saying 1024 bytes), and a PAX header claiming 3 GiB inside a small
    // layer: both must fail create quickly, hold no memory, leave nothing.
    let img = Image::new("unbounded");
    let mut pax = tar::Header::new_ustar();
    pax.set_path("x").unwrap();
    pax.set_size(3 << 30);
    pax.set_entry_type(tar::EntryType::XHeader);
    pax.set_cksum();
    let mut bomb = pax.as_bytes().to_vec();
    bomb.extend(vec![b'a'; 1 << 20]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![("zero", vec![0u8; 1024], "symlink"), ("pax", bomb, "PAX header claims")];
    for (name, layer, expect) in cases {
        let dir = img.base.join(name);
        write_layout(&dir, std::slice::from_ref(&layer));
        if name == "zero" {
            use sha2::{Digest, Sha256};
            let hex: String = Sha256::digest(&layer).iter().map(|b| format!("{b:02x}")).collect();
            let blob = dir.join("blobs/sha256").join(hex);
            std::fs::remove_file(&blob).unwrap();
            std::os::unix::fs::symlink("/dev/zero", &blob).unwrap();
        }
        let b = img.base.join(format!("{name}-bundle"));
        let out = img.cmd(&["bundle", "--image", &format!("{}:t", dir.display()), b.to_str().unwrap()]);
        assert!(out.status.success(), "{name}: {}", stderr(&out));
        let t = std::time::Instant::now();
        let mut child = img
            .strata()
            .args(["create", "--bundle"])
            .arg(&b)
            .arg(name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        let status = child.wait().unwrap();
        assert!(!status.success(), "{name}: accepted");
        assert!(t.elapsed() < std::time::Duration::from_secs(20), "{name}: took {:?}", t.elapsed());
        assert!(err.contains(expect), "{name}: {err}");
        assert!(!img.root.join(name).exists(), "{name}: state left");
        assert_eq!(std::fs::read_dir(img.store.join("tmp")).map(|r| r.count()).unwrap_or(0), 0, "{name}: unpack dir left");
    }
    assert_eq!(img.containers_in_store(), 0);
    assert!(img.layer_dirs().is_empty(), "a hostile layer reached the store");
}

/// Adds a user namespace mapping the container's 0..65536 to `host`.
fn in_userns(bundle: &Path, host: u32) {
    let path = bundle.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": host, "size": 65536}]);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
}

/// Every file under `dir` with its owner, as the host sees them.
fn owners(dir: &Path) -> Vec<(PathBuf, u32, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.path().symlink_metadata().unwrap();
            out.push((e.path(), m.uid(), m.gid()));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[test]
fn user_namespaced_containers_share_the_layers_through_idmapped_mounts() {
    need_root!();
    let img = Image::new("idmaplayers");
    // Owners, what the layers made (a whiteout, an opaque dir), a write
    // into a lower file's dir and a copy-up, all from inside.
    let script = "stat -c '%u:%g' /bin/busybox /etc/motd /etc/hostname /; tr -s ' ' < /proc/self/uid_map; ls /data; ls /opq; \
                  echo w > /etc/written && echo m >> /etc/motd && stat -c '%u:%g' /etc/written /etc/motd; id -u";
    let long = format!("{script}; sleep 30");
    let b1 = img.bundle("u1", "latest", &long);
    in_userns(&b1, 100_000);
    let st =
        img.strata().args(["run", "--detach", "--bundle"]).arg(&b1).arg("idl1").stdin(Stdio::null()).stdout(Stdio::null()).status_within();
    assert!(st.success(), "the first user-namespaced container did not start");
    let layers = img.layer_dirs();
    let before = owners(&img.store.join("layers"));
    // A second container, another mapping, while the first runs.
    let b2 = img.bundle("u2", "latest", script);
    in_userns(&b2, 200_000);
    let out = img.run(&b2, "idl2");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "0:0\n0:0\n0:0\n0:0\n 0 200000 65536\nb\nz\n0:0\n0:0\n0\n");
    // The first one sees the same, through its own mapping.
    assert!(stdout(&img.cmd(&["state", "idl1"])).contains("running"));
    let exec =
        img.cmd(&["exec", "idl1", "sh", "-c", "stat -c '%u:%g' /bin/busybox /etc/written /etc/motd; tr -s ' ' < /proc/self/uid_map"]);
    assert_eq!(stdout(&exec), "0:0\n0:0\n0:0\n 0 100000 65536\n", "{}", stderr(&exec));
    // The store: the same layer dirs, not one file chowned or copied; the
    // containers' writes are in their upper dirs, owned by their roots.
    assert_eq!(img.layer_dirs(), layers);
    assert_eq!(owners(&img.store.join("layers")), before);
    use std::os::unix::fs::MetadataExt;
    let upper1 = img.store.join("containers/idl1/upper/etc/written");
    assert_eq!(std::fs::metadata(&upper1).map(|m| (m.uid(), m.gid())).ok(), Some((100_000, 100_000)), "{}", upper1.display());
    assert!(img.cmd(&["delete", "--force", "idl1"]).status.success());
    assert_eq!(img.containers_in_store(), 0, "a container's store dirs were left");
    for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        assert!(!line.contains(img.base.to_str().unwrap()), "mount left behind: {line}");
    }
}

/// `skopeo copy` from the test layout to `dest` (a transport reference).
fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo").arg("copy").arg("-q").args(args).output().expect("skopeo (hack/setup installs it)");
    assert!(out.status.success(), "skopeo copy {args:?}: {}", stderr(&out));
}

#[test]
fn archives_are_read_in_place_and_share_the_layers() {
    need_root!();
    let img = Image::new("archives");
    let b = |name: &str| img.base.join(name).display().to_string();
    let src = format!("oci:{}:latest", img.layout.display());
    // gzip (as the layout has it), zstd, uncompressed; and docker-archive.
    skopeo(&[&src, &format!("oci-archive:{}:latest", b("gz.tar"))]);
    skopeo(&["--dest-compress", "--dest-compress-format", "zstd", &src, &format!("oci-archive:{}:latest", b("zst.tar"))]);
    skopeo(&["--dest-decompress", &src, &format!("dir:{}", b("plain.dir"))]);
    skopeo(&[
        "--dest-oci-accept-uncompressed-layers",
        &format!("dir:{}", b("plain.dir")),
        &format!("oci-archive:{}:latest", b("plain.tar")),
    ]);
    skopeo(&[&src, &format!("docker-archive:{}:localhost/bb:latest", b("docker.tar"))]);
    let zst = std::fs::read(b("zst.tar")).unwrap();
    assert!(zst.windows(4).any(|w| w == [0x28, 0xb5, 0x2f, 0xfd]), "skopeo wrote no zstd layer");
    let refs = [
        format!("oci-archive:{}:latest", b("gz.tar")),
        format!("oci-archive:{}:latest", b("zst.tar")),
        format!("oci-archive:{}:latest", b("plain.tar")),
        format!("docker-archive:{}:localhost/bb:latest", b("docker.tar")),
        format!("docker-archive:{}", b("docker.tar")),
    ];
    for (i, r) in refs.iter().enumerate() {
        let dir = img.base.join(format!("arc{i}"));
        let out = img.strata().args(["bundle", "--image", r]).arg(&dir).output_within();
        assert!(out.status.success(), "bundle --image {r}: {}", stderr(&out));
        let path = dir.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["args"] = json!(["sh", "-c", "ls /data; ls /opq; cat /etc/motd; echo w > /written && cat /written"]);
        std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        let out = img.run(&dir, &format!("arc{i}"));
        // Whiteouts and the opaque dir from the layers, a write on top.
        assert_eq!(stdout(&out), "b\nz\nlayer 3 motd\nw\n", "{r}: {}", stderr(&out));
        // One image however it was packed: the same three layers, unpacked once.
        assert_eq!(img.layer_dirs().len(), 3, "{r}: the store has {:?}", img.layer_dirs());
    }
    // Nothing was extracted beside the archives.
    let left: Vec<_> = std::fs::read_dir(&img.base).unwrap().flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    assert!(
        left.iter().all(|n| n.ends_with(".tar")
            || n.ends_with(".dir")
            || n.starts_with("arc")
            || ["layout", "store", "state"].contains(&n.as_str())),
        "{left:?}"
    );

    // A truncated archive and a corrupt one are refused, with nothing
    // written: no bundle, no layer, no container dirs.
    let gz = std::fs::read(b("gz.tar")).unwrap();
    std::fs::write(b("short.tar"), &gz[..gz.len() / 2]).unwrap();
    let mut bad = gz.clone();
    let at = bad.len() / 3;
    for x in &mut bad[at..at + 512] {
        *x ^= 0x5a;
    }
    std::fs::write(b("corrupt.tar"), &bad).unwrap();
    let fresh = Image { base: img.base.clone(), layout: img.layout.clone(), store: img.base.join("store2"), root: img.base.join("state2") };
    for name in ["short.tar", "corrupt.tar"] {
        let dir = img.base.join(format!("bad-{name}"));
        let out = fresh.strata().args(["bundle", "--image", &format!("oci-archive:{}:latest", b(name))]).arg(&dir).output_within();
        if out.status.success() {
            // The index and config may be intact: then create must refuse.
            let out = fresh.run(&dir, "bad");
            assert!(!out.status.success(), "{name} ran");
            let err = stderr(&out);
            assert!(err.contains(&b(name)) || err.contains("sha256:"), "{name}: {err}");
        } else {
            assert!(stderr(&out).contains(&b(name)), "{name}: {}", stderr(&out));
            assert!(!dir.join("config.json").exists(), "{name}: a bundle was written");
        }
        assert!(std::fs::read_dir(fresh.store.join("layers")).map(|r| r.count()).unwrap_or(0) < 3, "{name}: a bad layer was stored");
        assert_eq!(fresh.containers_in_store(), 0);
    }
    // (No Drop for `fresh`: `img`'s removes the whole base.)
    std::mem::forget(fresh);

    // commit needs a layout directory as its source: a clear error.
    let dir = img.base.join("arc0");
    let st =
        img.strata().args(["run", "--detach", "--bundle"]).arg(&dir).arg("arcc").stdin(Stdio::null()).stdout(Stdio::null()).status_within();
    assert!(st.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stdout(&img.cmd(&["state", "arcc"])).contains("stopped") {
        assert!(std::time::Instant::now() < deadline, "arcc did not stop");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let out = img.cmd(&["commit", "arcc", &format!("{}:v9", img.layout.display())]);
    assert!(!out.status.success() && stderr(&out).contains("not from an OCI layout directory"), "{}", stderr(&out));
}
