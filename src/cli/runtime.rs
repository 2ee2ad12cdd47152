//! The async runtime the commands run on.

use std::future::Future;

use crate::exit_codes;

/// Runs a future to completion on a fresh runtime; an exit code when none can be started.
pub fn block_on<F: Future>(future: F) -> Result<F::Output, u8> {
    match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            Err(exit_codes::FAILURE)
        }
    }
}
