//! Time comes from a `Clock` so that tests can move it (reservation expiry, token expiry).

use std::sync::Mutex;
use std::time::Duration;

use time::OffsetDateTime;

use crate::storage::Ts;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;

    /// Now, at the precision the database keeps.
    fn ts(&self) -> Ts {
        Ts::truncated(self.now())
    }
}

#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }
}

/// A clock that starts at the real time and moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<OffsetDateTime>);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(Mutex::new(OffsetDateTime::now_utc()))
    }
}

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        let mut t = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}
