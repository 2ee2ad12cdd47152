//! Step kinds, one file each; every step runs over `Writes`, `Broker` and `Clock` so that a dry-run is
//! the same code with rehearsing implementations.

mod claimed;
mod context;
mod http;
mod publish;
mod purge;
mod render;
mod reset;
mod sql;
mod wait;

pub use context::{Cancel, StepContext};
pub use http::run as http;
pub use publish::run as publish;
pub use purge::run as purge;
pub use render::Renderer;
pub use reset::run as reset;
pub use sql::run as sql;
pub use wait::run as wait;
