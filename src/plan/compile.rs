//! Compilation: a valid plan plus parameter values becomes a `Plan` that is bound, hashed and immutable.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::model::{RawPlan, Step};
use super::params::{self, ParamError, ParamValue, param_ref};
use super::selection::{self, SelectionQuery};

/// A plan ready to run: the reviewed document, its parameters, and the selection as bound SQL.
#[derive(Debug, Clone)]
pub struct Plan {
    pub raw: RawPlan,
    /// SHA-256 of the plan document (canonical JSON); a run refuses to resume when it changes.
    pub hash: String,
    pub params: BTreeMap<String, ParamValue>,
    /// SHA-256 of the parameter values; runs are resumed per plan name and parameters.
    pub params_hash: String,
    pub selection: SelectionQuery,
    /// Whether a step needs RabbitMQ (a publish, a purge, a wait on a queue): known before the
    /// run, so the broker is connected and its objects checked before the first write.
    pub needs_broker: bool,
}

impl Plan {
    pub fn short_hash(&self) -> &str {
        &self.hash[..12]
    }

    /// Parameters as `--param` arguments, for the commands the reports print.
    pub fn param_args(&self) -> String {
        self.params
            .iter()
            .map(|(k, v)| format!(" --param {k}={}", shell_quote(&v.to_arg())))
            .collect()
    }

    pub fn params_json(&self) -> serde_json::Value {
        serde_json::Value::Object(
            self.params
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect(),
        )
    }
}

/// Binds parameters and compiles the selection. The plan must have passed validation.
pub fn compile(raw: RawPlan, args: &[String]) -> Result<Plan, ParamError> {
    let params = params::bind(&raw.params, args)?;
    let hash = sha256(&serde_json::to_string(&raw).unwrap_or_default());
    let params_text: String = params
        .iter()
        .map(|(k, v)| format!("{k}={}\n", v.to_arg()))
        .collect();
    let params_hash = sha256(&params_text);
    let resolve = |text: &str| -> ParamValue {
        match param_ref(text).and_then(|name| params.get(name)) {
            Some(value) => value.clone(),
            None => ParamValue::String(text.to_string()),
        }
    };
    let selection = selection::compile(&raw.target, &raw.select, &resolve);
    let needs_broker = raw.steps.iter().any(|s| match s {
        Step::Publish(_) | Step::PurgeQueue(_) => true,
        Step::Wait(w) => w.queue_empty.is_some(),
        Step::Reset(_) | Step::Sql(_) => false,
    });
    Ok(Plan {
        raw,
        hash,
        params,
        params_hash,
        selection,
        needs_broker,
    })
}

pub fn sha256(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_.:/,@+=".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}
