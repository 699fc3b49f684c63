//! `ordo bench`: an HTTP load generator against a running server.

use clap::Args;

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
}

pub async fn run(_args: BenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
