//! `list` and `ps`: runc's table and JSON formats.

use anyhow::{Context, Result, bail};
use strata::container;
use strata::state::Root;

pub fn list(root: &Root, format: &str, quiet: bool) -> Result<()> {
    let mut rows = Vec::new();
    for id in root.ids()? {
        if let Ok((st, s)) = container::load(root, &id) {
            rows.push((st, s));
        }
    }
    if quiet {
        rows.iter().for_each(|(st, _)| println!("{}", st.id));
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<_> = rows.iter().map(|(st, s)| st.cli(*s)).collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            println!("{:<12} {:<8} {:<10} {:<40} {:<32} OWNER", "ID", "PID", "STATUS", "BUNDLE", "CREATED");
            for (st, s) in &rows {
                let c = st.cli(*s);
                println!("{:<12} {:<8} {:<10} {:<40} {:<32} {}", c.id, c.pid, c.status, c.bundle.display(), c.created, c.owner);
            }
        }
        other => bail!("list: unknown format {other:?} (table or json)"),
    }
    Ok(())
}

pub fn ps(root: &Root, id: &str, format: &str, ps_args: &[String]) -> Result<()> {
    let (st, _) = container::load(root, id).with_context(|| format!("ps {id}"))?;
    let pids = strata::container::processes(&st);
    match format {
        "json" => println!("{}", serde_json::to_string(&pids)?),
        "table" => {
            let args = if ps_args.is_empty() { vec!["-ef".to_string()] } else { ps_args.to_vec() };
            let out = std::process::Command::new("ps").args(&args).output().context("ps: run ps(1)")?;
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines = text.lines();
            let header = lines.next().unwrap_or_default();
            let pid_col = header.split_whitespace().position(|h| h == "PID").context("ps: no PID column in ps output")?;
            println!("{header}");
            for l in lines {
                if let Some(p) = l.split_whitespace().nth(pid_col).and_then(|p| p.parse::<i32>().ok())
                    && pids.contains(&p)
                {
                    println!("{l}");
                }
            }
        }
        other => bail!("ps: unknown format {other:?} (table or json)"),
    }
    Ok(())
}
