//! Bad input: a one-line error naming what is wrong, a non-zero exit, and
//! nothing left behind.

use serde_json::json;

use crate::common::{Bundle, stderr};
use crate::need_root;

fn assert_one_line_error(out: &std::process::Output, needle: &str) {
    assert!(!out.status.success(), "expected failure");
    let e = stderr(out);
    assert_eq!(e.trim_end().lines().count(), 1, "not one line: {e}");
    assert!(e.contains(needle), "error {e:?} does not mention {needle:?}");
}

#[test]
fn bad_ids_are_refused() {
    need_root!();
    let b = Bundle::sh("ids", "true");
    b.write_config();
    for id in ["../x", "a/b", "", ".hidden"] {
        let out = b.strata().args(["create", "--bundle"]).arg(&b.dir).arg(id).output().unwrap();
        assert_one_line_error(&out, "invalid container id");
    }
    assert!(!b.root.join("x").exists() && !b.root.parent().unwrap().join("x").exists());
}

#[test]
fn missing_or_broken_bundle() {
    need_root!();
    let b = Bundle::sh("badcfg", "true");
    let out = b.strata().args(["create", "--bundle", "/nonexistent/bundle", &b.id]).output().unwrap();
    assert_one_line_error(&out, "/nonexistent/bundle");
    std::fs::write(b.dir.join("config.json"), "{ not json").unwrap();
    let out = b.strata().args(["create", "--bundle"]).arg(&b.dir).arg(&b.id).output().unwrap();
    assert_one_line_error(&out, "config.json");
    b.assert_gone();
}

#[test]
fn duplicate_id_is_refused_and_first_survives() {
    need_root!();
    let b = Bundle::sh("dup", "sleep 30");
    assert!(b.create().status.success());
    let out = b.create();
    assert_one_line_error(&out, "already exists");
    assert_eq!(b.status(), "created");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn failed_setup_leaves_nothing() {
    need_root!();
    let mut b = Bundle::sh("badmount", "true");
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/x", "type": "bind", "source": "/nonexistent/src"}));
    let out = b.create();
    assert_one_line_error(&out, "/nonexistent/src");
    b.assert_gone();

    let mut b = Bundle::sh("noexe", "true");
    b.config["process"]["args"] = json!(["/no/such/binary"]);
    b.config["process"]["env"] = json!(["PATH=/bin"]);
    b.config["process"]["args"] = json!(["nosuchbinary"]);
    let out = b.create();
    assert_one_line_error(&out, "nosuchbinary");
    b.assert_gone();
}

#[test]
fn unknown_container_operations_fail() {
    need_root!();
    let b = Bundle::sh("ghost", "true");
    for args in [vec!["state", "ghost-x"], vec!["start", "ghost-x"], vec!["kill", "ghost-x"], vec!["delete", "ghost-x"]] {
        let out = b.cmd(&args);
        assert_one_line_error(&out, "ghost-x");
    }
    // delete --force of nothing succeeds, as with runc.
    assert!(b.cmd(&["delete", "--force", "ghost-x"]).status.success());
}

#[test]
fn spec_and_features() {
    let dir = std::env::temp_dir().join(format!("strata-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = std::process::Command::new(&*crate::common::STRATA).args(["spec", "--bundle"]).arg(&dir).output().unwrap();
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["root"]["path"], "rootfs");
    // A second `spec` does not overwrite.
    let again = std::process::Command::new(&*crate::common::STRATA).args(["spec", "--bundle"]).arg(&dir).output().unwrap();
    assert!(!again.status.success());
    std::fs::remove_dir_all(&dir).unwrap();
    let f = std::process::Command::new(&*crate::common::STRATA).arg("features").output().unwrap();
    let v: serde_json::Value = serde_json::from_slice(&f.stdout).unwrap();
    assert!(v["linux"]["namespaces"].as_array().unwrap().contains(&json!("time")));
    assert_eq!(v["ociVersionMax"], "1.2.0");
}
