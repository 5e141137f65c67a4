//! containerd's CRI plugin drives strata, as the kubelet does: a pod sandbox
//! on the host network, a container with memory and swap limits, and
//! `UpdateContainerResources` (Kubernetes' in-place resize) raising and
//! lowering both. On a cgroup v1 host the kernel wants `memory.limit_in_bytes`
//! at most `memory.memsw.limit_in_bytes` at every moment, so the two writes
//! must come in the right order in each direction. The limits are read from
//! inside the container, through `ExecSync`.
//!
//! The kubelet's side is `cri.py`: Debian has no crictl.

use super::containerd::Containerd;
use super::*;

const MIB: u64 = 1 << 20;
const POD_NAME: &str = "pod";

struct Cri<'a> {
    d: &'a Containerd,
    logs: PathBuf,
}

impl Cri<'_> {
    fn call(&self, args: &[&str]) -> Output {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/clients/cri.py");
        output_within(Command::new("/usr/bin/python3").arg(script).arg(&self.d.sock).args(args), None)
    }

    fn id(&self, args: &[&str]) -> String {
        let id = ok(&self.call(args)).trim().to_string();
        assert!(!id.is_empty(), "{args:?} gave no id");
        id
    }

    fn run_pod(&self) -> String {
        self.id(&["runp", POD_NAME, &self.d.cgparent, self.logs.to_str().unwrap()])
    }

    fn create(&self, pod: &str, name: &str, memory: u64, swap: u64, cmd: &[&str]) -> String {
        let (m, s) = (memory.to_string(), swap.to_string());
        let mut args = vec!["create", pod, POD_NAME, name, &self.d.cgparent, self.logs.to_str().unwrap(), IMAGE, &m, &s];
        args.extend(cmd);
        self.id(&args)
    }

    /// `memory.limit_in_bytes` and `memory.memsw.limit_in_bytes` (v1) or
    /// `memory.max` and `memory.swap.max` (v2), read inside the container.
    fn limits(&self, id: &str) -> String {
        ok(&self.call(&[
            "exec",
            id,
            "sh",
            "-c",
            "cd /sys/fs/cgroup; if [ -f memory.max ]; then cat memory.max memory.swap.max; \
             else cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes; fi",
        ]))
    }
}

fn grpc_for_python() -> bool {
    Command::new("/usr/bin/python3").args(["-c", "import grpc"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success())
}

#[test]
fn containerd_cri_drives_the_runtime() {
    need_root!();
    need_bins!("containerd", "ctr", "containerd-shim-runc-v2", "podman");
    if !grpc_for_python() {
        eprintln!("skipped: needs python3-grpcio (hack/setup-clients installs it)");
        return;
    }
    let base = temp_base("cri");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let d = Containerd::start(base.clone(), true);
    let cri = Cri { d: &d, logs: base.join("logs") };
    std::fs::create_dir_all(&cri.logs).unwrap();
    let mut c = Checks::new("containerd CRI");
    for tar in ["pause.docker.tar", "image.docker.tar"] {
        ok(&d.ctr(&["image", "import", base.join("img").join(tar).to_str().unwrap()]));
    }

    let mut pod = String::new();
    c.check("RunPodSandbox", || pod = cri.run_pod());
    let mut id = String::new();
    c.check("CreateContainer with memory and swap; StartContainer", || {
        id = cri.create(&pod, "c1", 64 * MIB, 128 * MIB, &["/bin/sleep", "1000"]);
        ok(&cri.call(&["start", &id]));
        assert_eq!(cri.limits(&id), format!("{}\n{}\n", 64 * MIB, v2_swap(64 * MIB, 128 * MIB)));
        // The runtime that made it is the one under test: its state is there.
        assert!(d.base.join("runc-root/k8s.io").join(&id).exists(), "no runtime state for {id}");
    });
    c.check("UpdateContainerResources raises memory and swap", || {
        ok(&cri.call(&["update", &id, &(256 * MIB).to_string(), &(512 * MIB).to_string()]));
        assert_eq!(cri.limits(&id), format!("{}\n{}\n", 256 * MIB, v2_swap(256 * MIB, 512 * MIB)));
    });
    c.check("UpdateContainerResources lowers memory and swap", || {
        ok(&cri.call(&["update", &id, &(32 * MIB).to_string(), &(48 * MIB).to_string()]));
        assert_eq!(cri.limits(&id), format!("{}\n{}\n", 32 * MIB, v2_swap(32 * MIB, 48 * MIB)));
    });
    c.check("ExecSync: exit code", || {
        let o = cri.call(&["exec", &id, "sh", "-c", "echo out; exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
        assert_eq!(stdout(&o), "out\n");
    });
    // A container whose process has already exited: stopping its pod has
    // the shim kill it, and runc's "container not running" tells it that
    // the container is stopped already (any other text fails the stop).
    let mut done = String::new();
    c.check("a container that exited: StopPodSandbox still succeeds", || {
        done = cri.create(&pod, "c2", 64 * MIB, 128 * MIB, &["/bin/true"]);
        ok(&cri.call(&["start", &done]));
        std::thread::sleep(Duration::from_secs(2));
        ok(&cri.call(&["stopp", &pod]));
    });
    c.check("StopContainer, RemoveContainer, StopPodSandbox, RemovePodSandbox: nothing left", || {
        ok(&cri.call(&["stop", &id]));
        ok(&cri.call(&["rm", &id]));
        ok(&cri.call(&["rm", &done]));
        ok(&cri.call(&["stopp", &pod]));
        ok(&cri.call(&["rmp", &pod]));
        let left = d.leftovers();
        assert!(left.is_empty(), "left behind: {left:?}");
    });
    c.finish();
}

/// What the container sees as its swap limit: v1's memsw is memory+swap, as
/// the CRI's field is; v2's memory.swap.max is the swap alone.
fn v2_swap(memory: u64, memory_and_swap: u64) -> u64 {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() { memory_and_swap - memory } else { memory_and_swap }
}
