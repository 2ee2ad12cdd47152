//! SIGINT and SIGTERM, the two ways a person or a supervisor asks a command to stop.

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT and SIGTERM, caught from the moment this is made (inside the runtime) until dropped.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
}

impl StopSignals {
    /// Starts catching both signals; from now on they no longer end the process.
    pub fn listen() -> std::io::Result<StopSignals> {
        Ok(StopSignals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for either signal.
    pub async fn received(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// SIGINT or SIGTERM, caught from the first poll.
pub async fn signalled() {
    match StopSignals::listen() {
        Ok(mut signals) => signals.received().await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
