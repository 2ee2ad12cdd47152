//! `replay doctor`: a preflight of what a run will need, as a list of checks (data; rendered by
//! `crate::render::doctor`).

mod broker;
mod check;
mod database;
mod preflight;
mod tools;

pub use check::{Check, Findings, Outcome};
pub use preflight::{DoctorPlan, Preflight, run};
