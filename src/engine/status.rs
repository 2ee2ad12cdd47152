//! The states of a run and of its steps, and what a report is of, written once: which states
//! can resume, which are finished.

use std::fmt;

/// A run's status, as stored in `replay.runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// A plan-logic failure is being undone; a crash here resumes the rollback, not the steps.
    RollingBack,
    /// Stopped by a signal, a spent retry budget, or a crash; resumable.
    Interrupted,
    /// Stopped by `replay stop`; resumable.
    Stopped,
    /// A step or verification failed and the plan has no rollback that ran; resumable once fixed.
    Failed,
    Succeeded,
    RolledBack,
    /// Refused before anything was written.
    Refused,
    /// Given up by `--restart`.
    Abandoned,
}

impl RunStatus {
    pub const ALL: [RunStatus; 9] = [
        RunStatus::Running,
        RunStatus::RollingBack,
        RunStatus::Interrupted,
        RunStatus::Stopped,
        RunStatus::Failed,
        RunStatus::Succeeded,
        RunStatus::RolledBack,
        RunStatus::Refused,
        RunStatus::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Running => "running",
            RunStatus::RollingBack => "rolling_back",
            RunStatus::Interrupted => "interrupted",
            RunStatus::Stopped => "stopped",
            RunStatus::Failed => "failed",
            RunStatus::Succeeded => "succeeded",
            RunStatus::RolledBack => "rolled_back",
            RunStatus::Refused => "refused",
            RunStatus::Abandoned => "abandoned",
        }
    }

    /// Whether `replay apply` of the same plan picks this run up again.
    pub fn resumable(self) -> bool {
        matches!(
            self,
            RunStatus::Running
                | RunStatus::RollingBack
                | RunStatus::Interrupted
                | RunStatus::Stopped
                | RunStatus::Failed
        )
    }

    /// Whether an executor may join the run, or take it over when its lease is free: it is in
    /// progress, or its executor went away (`interrupted`). A run stopped by `replay stop` or
    /// failed is resumed only by an operator's `replay apply`, never by an executor that joins.
    pub fn joinable(self) -> bool {
        matches!(
            self,
            RunStatus::Running | RunStatus::RollingBack | RunStatus::Interrupted
        )
    }

    /// The resumable statuses, for queries.
    pub fn resumable_names() -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|s| s.resumable())
            .map(|s| s.as_str())
            .collect()
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown run status `{s}`"))
    }
}

/// A step's status, as stored in `replay.step_runs.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Pending,
    Running,
    Done,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Pending => "pending",
            StepStatus::Running => "running",
            StepStatus::Done => "done",
        }
    }
}

impl fmt::Display for StepStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for StepStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        [StepStatus::Pending, StepStatus::Running, StepStatus::Done]
            .into_iter()
            .find(|v| v.as_str() == s)
            .ok_or_else(|| format!("unknown step status `{s}`"))
    }
}

/// Text columns whose values are one of an enum's names.
macro_rules! text_enum {
    ($t:ty) => {
        impl sqlx::Type<sqlx::Postgres> for $t {
            fn type_info() -> sqlx::postgres::PgTypeInfo {
                <String as sqlx::Type<sqlx::Postgres>>::type_info()
            }
        }

        impl sqlx::Encode<'_, sqlx::Postgres> for $t {
            fn encode_by_ref(
                &self,
                buf: &mut sqlx::postgres::PgArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <&str as sqlx::Encode<sqlx::Postgres>>::encode(self.as_str(), buf)
            }
        }

        impl sqlx::Decode<'_, sqlx::Postgres> for $t {
            fn decode(
                value: sqlx::postgres::PgValueRef<'_>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&str as sqlx::Decode<sqlx::Postgres>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    };
}

text_enum!(RunStatus);
text_enum!(StepStatus);

/// What a report is of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    #[default]
    Apply,
    DryRun,
    Rollback,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Apply => "apply",
            Mode::DryRun => "dry-run",
            Mode::Rollback => "rollback",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How `replay rollback RUN` ended (or, previewed, would end).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RollbackOutcome {
    /// A preview (`--dry-run`): what the rollback would do; nothing was written.
    WouldRollBack,
    RolledBack,
    /// Refused before writing: the run cannot be rolled back, or nobody confirmed.
    #[default]
    Refused,
    /// Ctrl-C (or SIGTERM) at the question or during the rollback.
    Interrupted,
    Failed,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_its_name() {
        for s in RunStatus::ALL {
            assert_eq!(s.as_str().parse::<RunStatus>(), Ok(s));
        }
        assert!("done".parse::<RunStatus>().is_err());
    }

    #[test]
    fn only_unfinished_runs_resume() {
        assert_eq!(
            RunStatus::resumable_names(),
            [
                "running",
                "rolling_back",
                "interrupted",
                "stopped",
                "failed"
            ]
        );
    }
}
