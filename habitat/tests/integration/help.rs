//! The `--help` of the commands a world of one's own is made with, as snapshots.

use super::support::run;

fn help(command: &str) -> anyhow::Result<String> {
    let out = run(&[command, "--help"])?;
    anyhow::ensure!(out.status.success(), "{command} --help failed");
    Ok(String::from_utf8(out.stdout)?)
}

#[test]
fn generate_help() -> anyhow::Result<()> {
    insta::assert_snapshot!(help("generate")?);
    Ok(())
}

#[test]
fn worker_help() -> anyhow::Result<()> {
    insta::assert_snapshot!(help("worker")?);
    Ok(())
}

#[test]
fn demo_help() -> anyhow::Result<()> {
    insta::assert_snapshot!(help("demo")?);
    Ok(())
}
