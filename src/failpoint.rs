//! Crash points for tests: with `ORDO_FAILPOINT=<name>` set, the process aborts when it
//! reaches the point of that name, as if it had lost power there. Crash tests start the
//! real binary with it and check what a restart makes of the state left behind. Unset (as
//! in production), a point costs one comparison.

use std::sync::OnceLock;

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    let armed = ARMED.get_or_init(|| std::env::var("ORDO_FAILPOINT").ok());
    if armed.as_deref() == Some(name) {
        eprintln!("failpoint {name}: aborting");
        std::process::abort();
    }
}
