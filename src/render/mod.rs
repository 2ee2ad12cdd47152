//! Everything people read of a run: the final report as text and as a Markdown pull-request
//! comment, and live progress; what `replay rollback` did or would do. The executor only emits
//! events and fills a report; it renders nothing itself. Also `validate`'s findings for CI:
//! workflow annotations and SARIF.

pub mod doctor;
pub mod github;
pub mod markdown;
pub mod numbers;
pub mod progress;
pub mod rollback;
pub mod sarif;
pub mod text;

pub use text::text;
