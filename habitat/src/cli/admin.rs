//! `habitat admin`: Habitat's admin API, served until SIGINT/SIGTERM.

use replay::engine::redact::redact_url;

use super::{CliError, StopSignals, database, runtime};

/// Where the admin API serves.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Habitat's database.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// The environment variable holding the bearer token calls must carry.
    #[arg(long = "token-env", default_value = "ADMIN_TOKEN")]
    pub token_env: String,
}

impl AdminArgs {
    /// Serves the admin API until SIGINT/SIGTERM.
    pub fn run(&self) -> Result<(), CliError> {
        let Ok(token) = std::env::var(&self.token_env) else {
            return Err(CliError::Usage(format!(
                "serve the admin API: set `{}` to the bearer token it accepts",
                self.token_env
            )));
        };
        runtime()?.block_on(async {
            let pool = database(&self.database_url).await?;
            let shown = redact_url(&self.database_url);
            crate::schema::apply(&pool)
                .await
                .map_err(|e| CliError::failed(format!("apply the habitat schema in {shown}"), e))?;
            let config = crate::admin::AdminConfig {
                token,
                failing: crate::FailureMode::None,
            };
            let mut stop = StopSignals::listen()
                .map_err(|e| CliError::failed("listen for SIGINT and SIGTERM", e))?;
            let server = crate::admin::start(pool, self.listen, config)
                .await
                .map_err(|e| CliError::failed(format!("listen on {}", self.listen), e))?;
            println!(
                "habitat admin API on {}/api/admin/replay-event",
                server.url()
            );
            stop.received().await;
            Ok(())
        })
    }
}
