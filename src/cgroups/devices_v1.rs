//! cgroup v1 device rules without a deny window.
//!
//! Writing `a` to `devices.deny` and then the allows, as a naive runtime
//! does, denies every device to every process in the cgroup until the
//! allows land: a container sharing the cgroup (or the container itself,
//! when `update` rewrites its rules) can fail to open /dev/null in that
//! moment. Instead, the rules the spec asks for are played on a model of
//! the kernel's list (`Rules`), the cgroup's current list is read from
//! `devices.list`, and only the difference is written: new exceptions
//! first, then the removal of those that go. An exception both lists share
//! is never touched. Only a change of the default (allow-all to deny-all or
//! back) needs the `a` rule, and that happens on a fresh cgroup.

use std::collections::BTreeMap;

/// (type, major, minor): `*` for any number.
type Key = (char, String, String);

/// The kernel's model of a v1 devices cgroup: a default and the exceptions
/// to it, with their access (`r`, `w`, `m`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub default_allow: bool,
    pub exceptions: BTreeMap<Key, String>,
}

impl Rules {
    /// What a new cgroup under the root holds: everything allowed.
    pub fn allow_all() -> Rules {
        Rules { default_allow: true, exceptions: BTreeMap::new() }
    }

    /// Parses `devices.list`: `a *:* rwm` alone means allow-all; otherwise
    /// the lines are the allowed exceptions to deny-all.
    pub fn parse_list(text: &str) -> Rules {
        let mut r = Rules { default_allow: false, exceptions: BTreeMap::new() };
        for line in text.lines() {
            let Some((key, access)) = parse_rule(line) else { continue };
            if key.0 == 'a' {
                return Rules::allow_all();
            }
            r.exceptions.insert(key, access);
        }
        r
    }

    /// Applies one write (`devices.allow` or `devices.deny` and its rule)
    /// as the kernel does.
    pub fn apply(&mut self, allow: bool, rule: &str) {
        let Some((key, access)) = parse_rule(rule) else { return };
        if key.0 == 'a' {
            *self = Rules { default_allow: allow, exceptions: BTreeMap::new() };
            return;
        }
        if allow != self.default_allow {
            // An exception to the default: add (or widen) it.
            let e = self.exceptions.entry(key).or_default();
            *e = union(e, &access);
        } else if let Some(e) = self.exceptions.get_mut(&key) {
            // The default's own kind: take that access off the exception.
            *e = e.chars().filter(|c| !access.contains(*c)).collect();
            if e.is_empty() {
                self.exceptions.remove(&key);
            }
        }
    }

    /// The writes that turn `self` (the cgroup's list now) into `target`,
    /// as (file, rule). Exceptions both share are left alone; new ones are
    /// added before old ones are removed.
    pub fn transition(&self, target: &Rules) -> Vec<(&'static str, String)> {
        let (add_file, remove_file) =
            if target.default_allow { ("devices.deny", "devices.allow") } else { ("devices.allow", "devices.deny") };
        let mut out = Vec::new();
        let start = if self.default_allow != target.default_allow {
            // A new default: unavoidable, and only on a cgroup whose default
            // the container has not set yet.
            out.push((remove_file, "a".to_string()));
            &Rules { default_allow: target.default_allow, exceptions: BTreeMap::new() }
        } else {
            self
        };
        for (k, want) in &target.exceptions {
            let have = start.exceptions.get(k).map(String::as_str).unwrap_or("");
            let missing: String = want.chars().filter(|c| !have.contains(*c)).collect();
            if !missing.is_empty() {
                out.push((add_file, format_rule(k, &missing)));
            }
        }
        for (k, have) in &start.exceptions {
            let want = target.exceptions.get(k).map(String::as_str).unwrap_or("");
            let extra: String = have.chars().filter(|c| !want.contains(*c)).collect();
            if !extra.is_empty() {
                out.push((remove_file, format_rule(k, &extra)));
            }
        }
        out
    }
}

fn union(a: &str, b: &str) -> String {
    "rwm".chars().filter(|c| a.contains(*c) || b.contains(*c)).collect()
}

fn format_rule(k: &Key, access: &str) -> String {
    format!("{} {}:{} {access}", k.0, k.1, k.2)
}

/// `c 1:3 rwm`, `a *:* rwm`, or `a` alone.
fn parse_rule(rule: &str) -> Option<(Key, String)> {
    let mut it = rule.split_whitespace();
    let t = it.next()?.chars().next()?;
    if !"abc".contains(t) {
        return None;
    }
    let (major, minor) = match it.next() {
        Some(mm) => mm.split_once(':').map(|(a, b)| (a.to_string(), b.to_string()))?,
        None if t == 'a' => ("*".into(), "*".into()),
        None => return None,
    };
    let access = union(it.next().unwrap_or("rwm"), "");
    Some(((t, major, minor), access))
}

/// The target list: the spec's writes played on a list that denies every
/// device, as runc's: a rule the spec does not give is not granted (a spec
/// that wants everything allowed says so with `a` allowed).
pub fn target(writes: &[(&str, String)]) -> Rules {
    let mut r = Rules { default_allow: false, exceptions: BTreeMap::new() };
    for (file, rule) in writes {
        r.apply(*file == "devices.allow", rule);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_writes() -> Vec<(&'static str, String)> {
        vec![
            ("devices.deny", "a".into()),
            ("devices.allow", "c 1:3 rwm".into()),
            ("devices.allow", "c 1:5 rwm".into()),
            ("devices.allow", "c 136:* rwm".into()),
        ]
    }

    #[test]
    fn the_same_rules_again_write_nothing() {
        let t = target(&spec_writes());
        let now = Rules::parse_list("c 1:3 rwm\nc 1:5 rwm\nc 136:* rwm\n");
        assert_eq!(now, t);
        assert!(now.transition(&t).is_empty());
    }

    #[test]
    fn a_change_adds_first_and_never_denies_a_shared_device() {
        let now = Rules::parse_list("c 1:3 rwm\nc 1:5 rwm\nc 10:200 rwm\n");
        let mut w = spec_writes();
        w.push(("devices.deny", "c 1:5 m".into()));
        let steps = now.transition(&target(&w));
        assert_eq!(
            steps,
            vec![
                ("devices.allow", "c 136:* rwm".to_string()),
                ("devices.deny", "c 1:5 m".to_string()),
                ("devices.deny", "c 10:200 rwm".to_string()),
            ]
        );
        assert!(!steps.iter().any(|(_, r)| r == "a" || r.starts_with("c 1:3")));
        // Played on the kernel model, the steps reach the target.
        let mut after = now.clone();
        for (f, r) in &steps {
            after.apply(*f == "devices.allow", r);
        }
        assert_eq!(after, target(&w));
    }

    /// As runc's: a device no rule allows is denied, even when the spec
    /// gives no deny-all rule of its own (or no rules at all).
    #[test]
    fn what_no_rule_allows_is_denied() {
        let t = target(&[("devices.allow", "c 1:3 rwm".into())]);
        assert!(!t.default_allow);
        assert_eq!(t.exceptions.len(), 1);
        assert_eq!(Rules::allow_all().transition(&t)[0], ("devices.deny", "a".to_string()));
        assert!(!target(&[]).default_allow && target(&[]).exceptions.is_empty());
        assert!(target(&[("devices.allow", "a".into())]).default_allow, "an allow-all rule allows all");
    }

    #[test]
    fn a_fresh_cgroup_gets_its_default_first() {
        let steps = Rules::allow_all().transition(&target(&spec_writes()));
        assert_eq!(steps[0], ("devices.deny", "a".to_string()));
        assert_eq!(steps.len(), 4);
        assert_eq!(Rules::parse_list("a *:* rwm\n"), Rules::allow_all());
    }
}
