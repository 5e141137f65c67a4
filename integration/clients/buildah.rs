//! buildah (and so `podman build`) runs every RUN step of an image build
//! through the OCI runtime: a build whose RUN steps run under strata makes
//! an image, and a container of that image shows what the steps did.

use super::*;

#[test]
fn buildah_builds_through_the_runtime() {
    need_root!();
    need_bins!("buildah", "podman");
    let base = temp_base("bah");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    // The runtime behind a wrapper that records each call, so the test sees
    // that the steps really went through it.
    let calls = base.join("calls.log");
    let wrapper = base.join("runtime");
    std::fs::write(&wrapper, format!("#!/bin/sh\necho \"$*\" >> {}\nexec {} \"$@\"\n", calls.display(), runtime().display())).unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let store: Vec<String> = vec![
        "--root".into(),
        base.join("root").display().to_string(),
        "--runroot".into(),
        base.join("runroot").display().to_string(),
        "--storage-driver".into(),
        "vfs".into(),
    ];
    let buildah = |args: &[&str]| {
        let mut c = Command::new("buildah");
        c.args(&store).args(args).current_dir(&base);
        output_within(&mut c, None)
    };
    let ctx = base.join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    let containerfile = format!(
        "FROM oci-archive:{}\nUSER 0\nRUN echo built-by-$(id -u) > /built.txt && rm /bin/wget\nRUN [\"sh\", \"-c\", \"test ! -e /bin/wget && echo second-step >> /built.txt\"]\nUSER 1000\n",
        base.join("img/image.oci.tar").display()
    );
    std::fs::write(ctx.join("Containerfile"), containerfile).unwrap();
    let rt = wrapper.display().to_string();
    let under_strata = ["--runtime", rt.as_str(), "--isolation", "oci", "--network", "none"];
    let mut c = Checks::new("buildah");

    c.check("bud: RUN steps run under the runtime", || {
        ok(&buildah(&[&["bud"][..], &under_strata, &["-t", "localhost/built:latest", ctx.to_str().unwrap()]].concat()));
        let log = std::fs::read_to_string(&calls).unwrap_or_default();
        let runs = log.lines().filter(|l| l.split_whitespace().any(|w| w == "run" || w == "create")).count();
        assert!(runs >= 2, "the runtime ran {runs} containers for two RUN steps: {log}");
    });

    c.check("a container of the built image shows what the steps did", || {
        ok(&buildah(&["from", "--name", "check", "localhost/built:latest"]));
        let script = "cat /built.txt; id -u; ls /bin/wget 2>/dev/null || echo no-wget";
        let out = ok(&buildah(&[&["run"][..], &under_strata, &["check", "--", "sh", "-c", script]].concat()));
        assert_eq!(out, "built-by-0\nsecond-step\n1000\nno-wget\n");
    });

    let _ = buildah(&["rm", "--all"]);
    let _ = buildah(&["rmi", "--all", "--force"]);
    c.check("nothing left behind", || {
        let mounts = mounts_under(&base);
        assert!(mounts.is_empty(), "{mounts:?}");
        let procs = procs_mentioning(base.to_str().unwrap());
        assert!(procs.is_empty(), "{procs:?}");
    });
    for m in mounts_under(&base).iter().rev() {
        let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
    if mounts_under(&base).is_empty() {
        let _ = std::fs::remove_dir_all(&base);
    }
    c.finish();
}
