//! The project's named targets (`replay.toml`): where `staging`, `production`, … are, by the
//! names of environment variables or files that hold their URLs (never the secrets themselves),
//! their defaults for plans, and whether a target is production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The file looked for in the current directory and its parents.
pub const FILE_NAME: &str = "replay.toml";

/// `replay.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub targets: BTreeMap<String, TargetConfig>,
}

/// One `[targets.NAME]` section.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// The environment variable holding the PostgreSQL URL.
    pub database_url_env: Option<String>,
    /// Or a file holding it (a mounted secret).
    pub database_url_file: Option<PathBuf>,
    /// The environment variable holding the RabbitMQ URL.
    pub amqp_url_env: Option<String>,
    /// Or a file holding it.
    pub amqp_url_file: Option<PathBuf>,
    /// Stricter gates: a typed confirmation naming the target, a rehearsal proof from another
    /// target, and a plan that names its window.
    #[serde(default)]
    pub production: bool,
    /// Defaults for plans that do not name them in `target:`.
    pub events_table: Option<String>,
    pub exchange: Option<String>,
    pub audit_table: Option<String>,
    /// Queues `replay inspect` shows when none are given.
    #[serde(default)]
    pub queues: Vec<String>,
}

/// A named target, resolved: its URLs read, its defaults ready to apply.
#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub database_url: String,
    pub amqp_url: Option<String>,
    pub production: bool,
    pub defaults: TargetConfig,
    /// The file it came from, for messages.
    pub file: PathBuf,
}

/// Why a named target cannot be used; each message names the file and the target.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "`--target {name}` needs a `{FILE_NAME}`: none in this directory or its parents (or give `--config FILE`)"
    )]
    NoFile { name: String },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is not a valid replay configuration: {message}")]
    Parse { path: String, message: String },
    #[error("`{path}` has no target `{name}`; its targets: {known}")]
    Unknown {
        path: String,
        name: String,
        known: String,
    },
    #[error("target `{name}` in `{path}`: {message}")]
    Target {
        path: String,
        name: String,
        message: String,
    },
}

impl Config {
    /// Reads the configuration at `path`.
    pub fn read(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.display().to_string(),
            message: e.message().to_string()
                + &e.span()
                    .map(|s| {
                        let line = text[..s.start].matches('\n').count() + 1;
                        format!(" (line {line})")
                    })
                    .unwrap_or_default(),
        })?;
        for (name, target) in &config.targets {
            target.check().map_err(|message| ConfigError::Target {
                path: path.display().to_string(),
                name: name.clone(),
                message,
            })?;
        }
        Ok(config)
    }

    /// The nearest `replay.toml` from `dir` upwards.
    pub fn find(dir: &Path) -> Option<PathBuf> {
        dir.ancestors()
            .map(|d| d.join(FILE_NAME))
            .find(|p| p.is_file())
    }

    /// Resolves target `name` of the configuration at `path` (or the nearest one), reading its
    /// URLs from the environment or files.
    pub fn target(name: &str, path: Option<&Path>) -> Result<Target, ConfigError> {
        let path = match path {
            Some(p) => p.to_path_buf(),
            None => std::env::current_dir()
                .ok()
                .and_then(|d| Config::find(&d))
                .ok_or_else(|| ConfigError::NoFile {
                    name: name.to_string(),
                })?,
        };
        let config = Config::read(&path)?;
        let Some(target) = config.targets.get(name) else {
            return Err(ConfigError::Unknown {
                path: path.display().to_string(),
                name: name.to_string(),
                known: match config.targets.is_empty() {
                    true => "none".into(),
                    false => config
                        .targets
                        .keys()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                },
            });
        };
        let fail = |message: String| ConfigError::Target {
            path: path.display().to_string(),
            name: name.to_string(),
            message,
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let database_url = read_secret(
            target.database_url_env.as_deref(),
            target.database_url_file.as_deref(),
            base,
        )
        .map_err(&fail)?
        .ok_or_else(|| {
            fail("names no database (`database_url_env` or `database_url_file`)".into())
        })?;
        let amqp_url = read_secret(
            target.amqp_url_env.as_deref(),
            target.amqp_url_file.as_deref(),
            base,
        )
        .map_err(&fail)?;
        Ok(Target {
            name: name.to_string(),
            database_url,
            amqp_url,
            production: target.production,
            defaults: target.clone(),
            file: path,
        })
    }
}

impl TargetConfig {
    /// A URL written into the file would be a secret in the repository: only names are allowed.
    fn check(&self) -> Result<(), String> {
        for (key, value) in [
            ("database_url_env", &self.database_url_env),
            ("amqp_url_env", &self.amqp_url_env),
        ] {
            if let Some(v) = value
                && (v.contains("://") || v.is_empty() || v.contains(char::is_whitespace))
            {
                return Err(format!(
                    "`{key}` must be the name of an environment variable, not a URL (URLs hold passwords; keep them out of the file)"
                ));
            }
        }
        if self.database_url_env.is_some() && self.database_url_file.is_some() {
            return Err("give `database_url_env` or `database_url_file`, not both".into());
        }
        if self.amqp_url_env.is_some() && self.amqp_url_file.is_some() {
            return Err("give `amqp_url_env` or `amqp_url_file`, not both".into());
        }
        Ok(())
    }
}

/// A URL from an environment variable or a file (relative to the configuration's directory).
fn read_secret(
    env: Option<&str>,
    file: Option<&Path>,
    base: &Path,
) -> Result<Option<String>, String> {
    match (env, file) {
        (Some(var), _) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(v.trim().to_string())),
            _ => Err(format!("the environment variable `{var}` is not set")),
        },
        (None, Some(file)) => {
            let path = base.join(file);
            std::fs::read_to_string(&path)
                .map(|t| Some(t.trim().to_string()))
                .map_err(|e| format!("cannot read `{}`: {e}", path.display()))
        }
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_written_into_the_file_are_refused() {
        let text = "[targets.production]\ndatabase_url_env = \"postgres://u:secret@db/x\"\n";
        let err = Config::parse(text, Path::new("replay.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a URL"), "{err}");
        assert!(!err.contains("secret"), "{err}");
        let text = "[targets.production]\ndatabase_url = \"postgres://u:secret@db/x\"\n";
        let err = Config::parse(text, Path::new("replay.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `database_url`"), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn a_target_reads_its_urls_from_the_environment_or_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        std::fs::write(dir.path().join("db.url"), "postgres://u@db/prod\n").unwrap();
        std::fs::write(
            &path,
            "[targets.production]\ndatabase_url_file = \"db.url\"\nproduction = true\nevents_table = \"events\"\n\n[targets.staging]\ndatabase_url_env = \"REPLAY_TEST_UNSET_VARIABLE\"\n",
        )
        .unwrap();
        let target = Config::target("production", Some(&path)).unwrap();
        assert_eq!(target.database_url, "postgres://u@db/prod");
        assert!(target.production);
        assert_eq!(target.defaults.events_table.as_deref(), Some("events"));
        assert_eq!(target.amqp_url, None);
        let err = Config::target("staging", Some(&path))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`REPLAY_TEST_UNSET_VARIABLE` is not set"),
            "{err}"
        );
        let err = Config::target("prod", Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("its targets: `production`, `staging`"),
            "{err}"
        );
    }
}
