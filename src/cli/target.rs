//! Where a command connects: a named target of `replay.toml`, or the URLs given as flags or in
//! the environment, resolved once per command.

use crate::config::{Config, TargetConfig};

use super::args::{DatabaseArgs, TargetArgs};

/// The local broker as guest: the default for commands that publish, when nothing names one.
pub const LOCAL_BROKER: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// The target a command runs against.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The name of `--target NAME`, none for bare URLs.
    pub name: Option<String>,
    pub database_url: String,
    pub amqp_url: Option<String>,
    pub production: bool,
    /// The named target's defaults for plans.
    pub defaults: Option<TargetConfig>,
}

impl DatabaseArgs {
    pub fn resolve(&self) -> Result<Resolved, String> {
        match &self.target {
            Some(name) => {
                let target =
                    Config::target(name, self.config.as_deref()).map_err(|e| e.to_string())?;
                Ok(Resolved {
                    name: Some(target.name),
                    database_url: target.database_url,
                    amqp_url: target.amqp_url,
                    production: target.production,
                    defaults: Some(target.defaults),
                })
            }
            None => match &self.database_url {
                Some(url) => Ok(self.production_by_url(url).unwrap_or(Resolved {
                    name: None,
                    database_url: url.clone(),
                    amqp_url: None,
                    production: false,
                    defaults: None,
                })),
                None => Err(
                    "no database: give `--target NAME` (see `replay.toml`), `--database-url URL` or `DATABASE_URL`"
                        .into(),
                ),
            },
        }
    }
}

impl DatabaseArgs {
    /// A bare URL that reaches a production target of the project's `replay.toml` is that
    /// target: its stricter gates apply, whatever way the URL was given (a leftover
    /// `DATABASE_URL` included).
    fn production_by_url(&self, url: &str) -> Option<Resolved> {
        let path = match &self.config {
            Some(p) => p.clone(),
            None => Config::find(&std::env::current_dir().ok()?)?,
        };
        let config = Config::read(&path).ok()?;
        let identity = super::apply::target_identity(url);
        config
            .targets
            .iter()
            .filter(|(_, t)| t.production)
            .find_map(|(name, _)| {
                let target = Config::target(name, Some(&path)).ok()?;
                (super::apply::target_identity(&target.database_url) == identity).then(|| {
                    eprintln!(
                        "note: {identity} is target `{name}` of `{}`: its production gates apply",
                        path.display()
                    );
                    Resolved {
                        name: Some(target.name),
                        database_url: url.to_string(),
                        amqp_url: target.amqp_url,
                        production: true,
                        defaults: Some(target.defaults),
                    }
                })
            })
    }
}

impl TargetArgs {
    /// The database and broker; a named target's broker is its own (none when it names none),
    /// bare URLs fall back to `fallback_broker`.
    pub fn resolve(&self, fallback_broker: Option<&str>) -> Result<Resolved, String> {
        let mut resolved = self.database.resolve()?;
        // Given by URL (even one that turned out to be a named target's): the broker's URL
        // given beside it wins.
        if self.database.target.is_none() {
            resolved.amqp_url = self
                .amqp_url
                .clone()
                .or(resolved.amqp_url)
                .or_else(|| fallback_broker.map(str::to_string));
        }
        Ok(resolved)
    }
}

impl Resolved {
    /// The plan's `target:` fields that the plan file does not write take the named target's
    /// defaults (events table, exchange, audit table).
    pub fn apply_defaults(
        &self,
        raw: &mut crate::plan::model::RawPlan,
        source: &crate::plan::Source,
    ) {
        let Some(defaults) = &self.defaults else {
            return;
        };
        let written = |key: &str| {
            source
                .root
                .get("target")
                .is_some_and(|t| t.value.get(key).is_some())
        };
        let fields = [
            (
                "events_table",
                &defaults.events_table,
                &mut raw.target.events_table,
            ),
            ("exchange", &defaults.exchange, &mut raw.target.exchange),
            (
                "audit_table",
                &defaults.audit_table,
                &mut raw.target.audit_table,
            ),
        ];
        for (key, default, field) in fields {
            if let Some(value) = default
                && !written(key)
            {
                *field = value.clone();
            }
        }
    }
}
