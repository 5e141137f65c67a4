//! End-to-end tests of the public API on a small three-layer image built in
//! memory: prepare, mount (as root), commit, bundle, remove, prune.

use super::apply::tests::{Tar, gzip};
use super::store::tests::tmp_store;
use super::*;
use crate::image::layout::{self, tests::TestLayout};
use crate::image::types::{MT_CONFIG, MT_LAYER_GZIP, MT_MANIFEST, REF_NAME, host_platform};
use crate::image::write::write_blob;
use serde_json::json;

/// base: /etc/passwd, /etc/group, /data/a, /opq/old; mid: /data/b;
/// top: deletes /data/a, makes /opq opaque with /opq/new.
fn image() -> TestLayout {
    let l = TestLayout::new("api");
    let tars = [
        Tar::new()
            .dir("etc/", 0o755)
            .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n")
            .file("etc/group", b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n")
            .file("data/a", b"a")
            .file("opq/old", b"old")
            .finish(),
        Tar::new().file("data/b", b"b").finish(),
        Tar::new().file("data/.wh.a", b"").dir("opq/", 0o755).file("opq/.wh..wh..opq", b"").file("opq/new", b"new").finish(),
    ];
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for t in &tars {
        let (d, n) = write_blob(&l.0, &gzip(t)).unwrap();
        layers.push(json!({"mediaType": MT_LAYER_GZIP, "digest": d.to_string(), "size": n}));
        diff_ids.push(Digest::of(t).to_string());
    }
    let (os, arch) = host_platform();
    let config = json!({"os": os, "architecture": arch, "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Entrypoint": ["/bin/sh", "-c"], "Cmd": ["echo hi"], "Env": ["PATH=/opt/bin:/bin", "A=1"],
                   "WorkingDir": "/data", "User": "app", "Labels": {"org.example": "yes"}},
        "history": [{"created_by": "l1"}, {"created_by": "l2"}, {"created_by": "l3"}]});
    let (cd, cn) = write_blob(&l.0, &serde_json::to_vec(&config).unwrap()).unwrap();
    let manifest = json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
        "config": {"mediaType": MT_CONFIG, "digest": cd.to_string(), "size": cn}, "layers": layers});
    let (md, mn) = write_blob(&l.0, &serde_json::to_vec(&manifest).unwrap()).unwrap();
    l.index(vec![json!({"mediaType": MT_MANIFEST, "digest": md.to_string(), "size": mn, "annotations": {REF_NAME: "latest"}})]);
    l
}

#[test]
fn prepare_records_refs_and_reuses_layers() {
    // The image has an opaque dir: trusted.overlay.opaque needs root.
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let img = image();
    let s = tmp_store("api");
    let none = HashMap::new();
    let a = prepare_rootfs(&s.0, img.0.to_str().unwrap(), Some("latest"), "c1", Some("host1"), &none, None).unwrap();
    let b = prepare_rootfs(&s.0, img.0.to_str().unwrap(), None, "c2", None, &none, None).unwrap();
    assert_eq!(a.chain_ids, b.chain_ids);
    assert_eq!(a.plan.lowers.len(), 4);
    assert!(a.plan.lowers[0].ends_with("containers/c1/init"));
    assert_eq!(a.plan.lowers[1], s.0.link_path(&a.chain_ids[2]), "top layer right under init");
    assert_eq!(std::fs::read_to_string(a.plan.lowers[0].join("etc/hostname")).unwrap(), "host1\n");
    assert!(prepare_rootfs(&s.0, img.0.to_str().unwrap(), None, "c1", None, &none, None).unwrap_err().to_string().contains("already"));
    let layers = list_layers(&s.0).unwrap();
    assert_eq!(layers.len(), 3);
    assert!(layers.iter().all(|l| l.containers == 2));
    assert!(prune(&s.0).unwrap().is_empty());
    remove_container(&s.0, "c1").unwrap();
    assert!(prune(&s.0).unwrap().is_empty(), "c2 still uses every layer");
    remove_container(&s.0, "c2").unwrap();
    assert_eq!(prune(&s.0).unwrap().len(), 3);
    // A failed prepare (unknown ref) leaves no container behind.
    assert!(prepare_rootfs(&s.0, img.0.to_str().unwrap(), Some("nope"), "c3", None, &none, None).is_err());
    assert!(!s.0.root().join("containers/c3").exists());
}

#[test]
fn bundle_takes_the_image_config() {
    let img = image();
    let dir = std::env::temp_dir().join(format!("strata-bundle-{}", unique_name()));
    let base = json!({"ociVersion": "1.2.0", "process": {"args": ["sh"], "env": ["PATH=/usr/bin", "TERM=xterm"], "cwd": "/"}, "root": {"path": "rootfs"}});
    bundle_from_image(&format!("{}:latest", img.0.display()), &dir, base).unwrap();
    let spec: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(spec["process"]["args"], json!(["/bin/sh", "-c", "echo hi"]));
    assert_eq!(spec["process"]["env"], json!(["TERM=xterm", "PATH=/opt/bin:/bin", "A=1"]));
    assert_eq!(spec["process"]["cwd"], json!("/data"));
    assert_eq!(spec["process"]["user"], json!({"uid": 1000, "gid": 1000, "additionalGids": [10]}));
    assert_eq!(spec["annotations"]["org.example"], json!("yes"));
    assert!(spec["annotations"][bundle::ANN_REF].as_str().unwrap().starts_with("sha256:"));
    assert!(dir.join("rootfs").is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mount_commit_and_reuse() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let img = image();
    let s = tmp_store("mount");
    let p = prepare_rootfs(&s.0, img.0.to_str().unwrap(), Some("latest"), "m1", Some("box"), &HashMap::new(), None).unwrap();
    mount_overlay(&p.plan).unwrap();
    let m = p.plan.target.clone();
    let checks = std::panic::catch_unwind(|| {
        assert_eq!(std::fs::read_to_string(m.join("data/b")).unwrap(), "b");
        assert!(!m.join("data/a").exists(), "whiteout hides data/a");
        assert!(!m.join("opq/old").exists(), "opaque dir hides opq/old");
        assert_eq!(std::fs::read_to_string(m.join("opq/new")).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(m.join("etc/hostname")).unwrap(), "box\n");
        assert!(m.join("etc/passwd").exists());
        std::fs::write(m.join("data/c"), "c").unwrap();
        std::fs::remove_file(m.join("data/b")).unwrap();
    });
    assert!(matches!(remove_container(&s.0, "m1"), Err(LayerError::Busy(_))), "refuses while mounted");
    unmount(&p.plan.target).unwrap();
    checks.unwrap();

    let digest = commit(&s.0, "m1", &p.plan.upper, &img.0, "committed").unwrap();
    let image = layout::resolve(&img.0, Some("committed")).unwrap();
    assert_eq!(image.manifest_digest.as_str(), digest);
    assert_eq!(image.layers.len(), 4);
    assert_eq!(image.config.history.len(), 4);
    assert!(layout::resolve(&img.0, Some("latest")).is_ok(), "the old ref stays");

    let q = prepare_rootfs(&s.0, img.0.to_str().unwrap(), Some("committed"), "m2", None, &HashMap::new(), None).unwrap();
    assert_eq!(&q.chain_ids[..3], &p.chain_ids[..], "base layers are shared");
    mount_overlay(&q.plan).unwrap();
    let m = q.plan.target.clone();
    let seen = (std::fs::read_to_string(m.join("data/c")).ok(), m.join("data/b").exists());
    unmount(&m).unwrap();
    assert_eq!(seen, (Some("c".to_string()), false), "the committed layer adds c and deletes b");
    let (upper, virt) = container_usage(&s.0, "m1").unwrap();
    assert_eq!(upper, 1);
    assert!(virt > upper);
    remove_container(&s.0, "m1").unwrap();
    remove_container(&s.0, "m2").unwrap();
}

#[test]
fn unpack_all_runs_each_layer_once_side_by_side_and_reports_the_first_error() {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let running = AtomicUsize::new(0);
    let most = AtomicUsize::new(0);
    let done = Mutex::new(Vec::new());
    let layers: Vec<usize> = (0..7).collect();
    unpack_all(&layers, 3, |i| {
        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
        most.fetch_max(now, Ordering::SeqCst);
        std::thread::sleep(std::time::Duration::from_millis(30));
        running.fetch_sub(1, Ordering::SeqCst);
        done.lock().unwrap().push(i);
        Ok(())
    })
    .unwrap();
    let mut done = done.into_inner().unwrap();
    done.sort();
    assert_eq!(done, layers, "each layer exactly once");
    assert_eq!(most.load(Ordering::SeqCst), 3, "three at a time");
    // Failures: the lowest failing layer's error, whichever failed first.
    let e = unpack_all(&layers, 3, |i| {
        std::thread::sleep(std::time::Duration::from_millis(if i == 1 { 40 } else { 5 }));
        if i == 1 || i == 2 { Err(LayerError::Plan(format!("layer {i}"))) } else { Ok(()) }
    })
    .unwrap_err();
    assert_eq!(e.to_string(), LayerError::Plan("layer 1".into()).to_string());
    // One job: in order, on this thread.
    let order = Mutex::new(Vec::new());
    let me = std::thread::current().id();
    unpack_all(&layers, 1, |i| {
        assert_eq!(std::thread::current().id(), me);
        order.lock().unwrap().push(i);
        Ok(())
    })
    .unwrap();
    assert_eq!(order.into_inner().unwrap(), layers);
}
