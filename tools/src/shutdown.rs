//! [`Shutdown`]: SIGINT and SIGTERM turned into a flag that long-running commands poll.
//!
//! The first signal asks the command to stop: it finishes what it holds (appends the pending
//! batch, closes the log cleanly) and returns. A second signal while the first is being
//! handled exits at once with status 1, for a stop that hangs. The flag is passed down to the
//! commands that loop, not read from a global.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use anyhow::Context;
use signal_hook::consts::{SIGINT, SIGTERM};

/// Set once SIGINT or SIGTERM arrived. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    /// The number of the first signal received, 0 while none.
    signal: Arc<AtomicUsize>,
}

impl Shutdown {
    /// Installs the handlers for SIGINT and SIGTERM.
    pub fn install() -> anyhow::Result<Shutdown> {
        let signal = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(AtomicBool::new(false));
        for number in [SIGINT, SIGTERM] {
            // Registration order is run order: the conditional exit sees `received` as it
            // was before this signal, so only a second signal exits.
            signal_hook::flag::register_conditional_shutdown(number, 1, Arc::clone(&received))
                .context("installing signal handler")?;
            signal_hook::flag::register(number, Arc::clone(&received))
                .context("installing signal handler")?;
            signal_hook::flag::register_usize(number, Arc::clone(&signal), number as usize)
                .context("installing signal handler")?;
        }
        Ok(Shutdown { signal })
    }

    /// The signal that asked to stop, if one did.
    pub fn requested(&self) -> Option<i32> {
        match self.signal.load(Ordering::Acquire) {
            0 => None,
            number => i32::try_from(number).ok(),
        }
    }

    pub fn is_requested(&self) -> bool {
        self.requested().is_some()
    }
}
