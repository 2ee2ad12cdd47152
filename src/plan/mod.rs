//! The plan language: loading, validation, the schema, and compilation into a runnable plan.

pub mod access;
pub mod builtins;
mod checks;
pub mod compile;
pub mod diagnostic;
pub mod duration;
pub mod location;
pub mod model;
pub mod params;
pub mod prepared;
pub mod privileges;
mod prune;
pub mod rules;
pub mod schema;
pub mod selection;
pub mod source;
pub mod sql;
pub mod strict_sql;
pub mod template;
pub mod usage;
pub mod validate;
pub mod yaml;

pub use compile::{CompileError, Plan, compile};
pub use diagnostic::{Diagnostic, Rendered, Severity};
pub use model::RawPlan;
pub use source::{LoadError, Source};
pub use validate::{
    Options, Validated, validate, validate_file, validate_file_with, validate_with,
};
