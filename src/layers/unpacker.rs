//! Who unpacks a layer (root of the host, root of a user namespace, or
//! neither), which decides what of its metadata is kept and how overlay's
//! opaque marker is spelled.

pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// The opaque marker of an overlay mounted with `userxattr`.
pub const USER_OPAQUE_XATTR: &str = "user.overlay.opaque";

/// Who unpacks a layer, which decides what of its metadata is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unpacker {
    /// Root of the host: owners, device nodes and every xattr but overlay's
    /// own; opaque dirs as `trusted.overlay.opaque`.
    HostRoot,
    /// Root of a user namespace (a rootless store, see
    /// `userns::run_as_root`): owners as the namespace maps them;
    /// `user.*` and `security.capability` xattrs only (the others need the
    /// host's CAP_SYS_ADMIN); opaque dirs as `user.overlay.opaque`. Device
    /// nodes are skipped, as containers-storage does: mknod needs the
    /// host's CAP_MKNOD, and the runtime gives a container its devices.
    UserNsRoot,
    /// Neither: files stay the caller's, and only `user.*` xattrs are kept.
    Unprivileged,
}

impl Unpacker {
    pub fn current() -> Unpacker {
        if !nix::unistd::geteuid().is_root() {
            Unpacker::Unprivileged
        } else if crate::userns::in_user_namespace() {
            Unpacker::UserNsRoot
        } else {
            Unpacker::HostRoot
        }
    }

    pub fn opaque_xattr(self) -> &'static str {
        match self {
            Unpacker::HostRoot => OPAQUE_XATTR,
            Unpacker::UserNsRoot | Unpacker::Unprivileged => USER_OPAQUE_XATTR,
        }
    }

    /// Overlay's own xattrs (origin, redirect, metacopy... in either
    /// namespace) are never taken from an image: they would steer the
    /// overlay mount.
    pub fn keeps_xattr(self, name: &str) -> bool {
        if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
            return false;
        }
        match self {
            Unpacker::HostRoot => true,
            Unpacker::UserNsRoot => name.starts_with("user.") || name == "security.capability",
            Unpacker::Unprivileged => name.starts_with("user."),
        }
    }
}
