//! The command line before clap sees it: Go-style flags, and the durations
//! runc's flags take.

use anyhow::Result;

/// runc parses flags as Go does, where `-name` is `--name`, and clients
/// pass that form (containerd's go-runc gives `restore -no-subreaper`).
/// Among the flags (before the first positional argument after the
/// command, so never in a container process's own arguments), `-name` or
/// `-name=value` becomes `--name...` when `--name` is a long flag of the
/// command or a global one. The command tree is built only when an
/// argument of that form is there (`top` is then made).
pub fn go_style_flags(mut args: Vec<std::ffi::OsString>, tree: impl FnOnce() -> clap::Command) -> Vec<std::ffi::OsString> {
    let go_style = |a: &std::ffi::OsString| -> Option<String> {
        let rest = a.to_str()?.strip_prefix('-').filter(|r| !r.starts_with('-'))?;
        let name = rest.split('=').next().unwrap_or("");
        (name.len() >= 2 && name.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')).then(|| name.to_string())
    };
    if !args.iter().skip(1).any(|a| go_style(a).is_some()) {
        return args;
    }
    let top = tree();
    let mut current = &top;
    let find = |cmd: &clap::Command, long: &str| -> Option<bool> {
        [cmd, &top].iter().find_map(|c| {
            c.get_arguments()
                .find(|a| a.get_long() == Some(long) || a.get_all_aliases().is_some_and(|al| al.contains(&long)))
                .map(|a| a.get_action().takes_values())
        })
    };
    let short_takes_value = |cmd: &clap::Command, c: char| -> bool {
        [cmd, &top].iter().any(|x| x.get_arguments().any(|a| a.get_short() == Some(c) && a.get_action().takes_values()))
    };
    let mut i = 1;
    while i < args.len() {
        let Some(s) = args[i].to_str().map(String::from) else { break };
        if s == "--" {
            break;
        }
        if let Some(rest) = s.strip_prefix("--") {
            let name = rest.split('=').next().unwrap_or("");
            i += if !rest.contains('=') && find(current, name) == Some(true) { 2 } else { 1 };
        } else if let Some(name) = go_style(&args[i]) {
            match find(current, &name) {
                Some(takes) => {
                    args[i] = format!("-{s}").into();
                    i += if takes && !s.contains('=') { 2 } else { 1 };
                }
                None => i += 1,
            }
        } else if s.len() > 1 && s.starts_with('-') {
            let last = s.chars().last().unwrap_or('-');
            i += if s.len() == 2 && short_takes_value(current, last) { 2 } else { 1 };
        } else if std::ptr::eq(current, &top) {
            match top.find_subcommand(&s) {
                Some(sub) => {
                    current = sub;
                    i += 1;
                }
                None => break,
            }
        } else {
            break;
        }
    }
    args
}

/// A Go duration, as runc's flags take them: `100ms`, `1s`, `1m30s`,
/// `1.5h`, or a plain number of seconds.
pub fn parse_go_duration(s: &str) -> Result<std::time::Duration> {
    if let Ok(secs) = s.parse::<f64>() {
        return Ok(std::time::Duration::from_secs_f64(secs.max(0.0)));
    }
    let units = [("ns", 1e-9), ("us", 1e-6), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0), ("m", 60.0), ("h", 3600.0)];
    let mut rest = s;
    let mut total = 0.0;
    while !rest.is_empty() {
        let n = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let value: f64 = rest[..n].parse().map_err(|_| anyhow::anyhow!("not a duration (say 100ms, 5s, 1m)"))?;
        rest = &rest[n..];
        let (unit, scale) = units
            .iter()
            .filter(|(u, _)| rest.starts_with(u))
            .max_by_key(|(u, _)| u.len())
            .ok_or_else(|| anyhow::anyhow!("missing or unknown unit (ns, us, ms, s, m, h)"))?;
        total += value * scale;
        rest = &rest[unit.len()..];
    }
    Ok(std::time::Duration::from_secs_f64(total))
}
