//! Password checks of every dialect's login (Yeastar `get_token`, Telecom X `/auth/login`,
//! PortSIP `sign_in` and the OAuth form): bounded, throttled, and timed alike for known and
//! unknown users.
//!
//! * **Bounded.** argon2 takes about 19 MiB and tens of milliseconds of a core per check. At most
//!   `[http] max_password_checks` run at once; a login that finds no free slot within
//!   [`CHECK_WAIT`] is refused as [`LoginError::Busy`] without a check, so a flood of logins
//!   costs neither the memory nor the cores the AMI readers need.
//! * **Throttled.** Failures are counted per user name and per source address. After
//!   [`FREE_FAILURES`] in a row, the next attempt from that name or that address is refused
//!   ([`LoginError::Throttled`], without a check) until a delay has passed since the last
//!   failure: [`FIRST_DELAY`], doubling with every further failure, at most [`MAX_DELAY`]. A
//!   success clears both counts; a count is forgotten [`FORGET_AFTER`] after its last failure.
//!   At most [`MAX_TRACKED`] counts are kept; beyond that the oldest goes.
//! * **Alike.** An unknown user costs the same argon2 run as a known one
//!   ([`Directory::authenticate`]), and both fail with the same answer.
//!
//! Failures are logged with the user name and the source address, never the password.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tracing::warn;

use crate::access::{Directory, User};

/// How long a login waits for a free check slot before it is refused as busy.
pub const CHECK_WAIT: Duration = Duration::from_secs(2);
/// Failures in a row that cost nothing.
pub const FREE_FAILURES: u32 = 3;
/// The delay after the first failure beyond [`FREE_FAILURES`]; it doubles with each further one.
pub const FIRST_DELAY: Duration = Duration::from_secs(1);
/// The longest delay.
pub const MAX_DELAY: Duration = Duration::from_secs(60);
/// A count is forgotten this long after its last failure.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Most failure counts kept (names and addresses together).
pub const MAX_TRACKED: usize = 10_000;

/// Why a login was refused; shown as what every dialect tells the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Wrong user name or password.
    #[error("wrong username or password")]
    Wrong,
    /// Every check slot stayed taken for [`CHECK_WAIT`]: nothing was checked.
    #[error("too many logins; try again in {} s", self.retry_after_secs())]
    Busy,
    /// Too many failures for this name or address: try again after this long.
    #[error("too many logins; try again in {} s", self.retry_after_secs())]
    Throttled(Duration),
}

impl LoginError {
    /// Seconds to wait before the next try, for `Retry-After` and the dialects' messages.
    pub fn retry_after_secs(self) -> u64 {
        match self {
            LoginError::Throttled(d) => d.as_secs_f64().ceil() as u64,
            LoginError::Busy => CHECK_WAIT.as_secs(),
            LoginError::Wrong => 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    User(String),
    Source(IpAddr),
}

#[derive(Clone, Copy, Debug)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    /// How long after the last failure the next attempt is refused.
    fn delay(self) -> Duration {
        let beyond = self.count.saturating_sub(FREE_FAILURES);
        if beyond == 0 {
            return Duration::ZERO;
        }
        FIRST_DELAY
            .saturating_mul(1u32 << (beyond - 1).min(16))
            .min(MAX_DELAY)
    }
}

/// The password checks of all dialects; one per daemon.
#[derive(Debug)]
pub struct Logins {
    permits: Arc<Semaphore>,
    failures: Mutex<HashMap<Key, Failures>>,
}

impl Logins {
    /// At most `max_checks` argon2 checks at once.
    pub fn new(max_checks: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max_checks.max(1))),
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, Failures>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user whose name (as [`Directory::login_name`] resolves it) and password these are.
    pub async fn check(
        &self,
        directory: Arc<Directory>,
        login: &str,
        password: String,
        source: IpAddr,
    ) -> Result<Arc<User>, LoginError> {
        let keys = [Key::User(login.to_owned()), Key::Source(source)];
        if let Some(wait) = self.throttled(&keys, Instant::now()) {
            warn!(user = login, %source, retry_after = ?wait, "login refused: too many failed attempts");
            return Err(LoginError::Throttled(wait));
        }
        let Ok(Ok(permit)) =
            tokio::time::timeout(CHECK_WAIT, self.permits.clone().acquire_owned()).await
        else {
            warn!(user = login, %source, "login refused: every password check slot is busy");
            return Err(LoginError::Busy);
        };
        let name = directory.login_name(login).to_owned();
        // The permit travels with the check: a client that goes away does not free the slot
        // while argon2 still runs.
        let user = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            directory.authenticate(&name, &password)
        })
        .await
        .ok()
        .flatten();
        match user {
            Some(u) => {
                let mut failures = self.lock();
                for k in &keys {
                    failures.remove(k);
                }
                Ok(u)
            }
            None => {
                self.failed(keys, Instant::now());
                warn!(user = login, %source, "login failed: wrong user name or password");
                Err(LoginError::Wrong)
            }
        }
    }

    /// How long the longest delay of `keys` has still to run, if any.
    fn throttled(&self, keys: &[Key], now: Instant) -> Option<Duration> {
        let failures = self.lock();
        keys.iter()
            .filter_map(|k| failures.get(k))
            .filter_map(|f| (f.last + f.delay()).checked_duration_since(now))
            .filter(|d| !d.is_zero())
            .max()
    }

    fn failed(&self, keys: [Key; 2], now: Instant) {
        let mut failures = self.lock();
        if failures.len() >= MAX_TRACKED {
            failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        }
        for k in keys {
            if !failures.contains_key(&k) && failures.len() >= MAX_TRACKED {
                let oldest = failures
                    .iter()
                    .min_by_key(|(_, f)| f.last)
                    .map(|(k, _)| k.clone());
                if let Some(oldest) = oldest {
                    failures.remove(&oldest);
                }
            }
            let f = failures.entry(k).or_insert(Failures {
                count: 0,
                last: now,
            });
            f.count = f.count.saturating_add(1);
            f.last = now;
        }
    }
}

/// The address a request came from: the TCP peer (behind a reverse proxy, the proxy's).
/// Requests made without a socket (tests through `oneshot`) come from 0.0.0.0.
#[derive(Clone, Copy, Debug)]
pub struct Source(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Source(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip()),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::UserConfig;

    fn directory() -> Arc<Directory> {
        let user = UserConfig {
            name: "tweber".into(),
            password_hash: crate::access::hash_password("right").unwrap(),
            interface: Some("Local/340@agents/n".into()),
            state_interface: None,
            display_name: None,
            extension: Some("340".into()),
            roles: vec![],
            server: None,
            queues: vec![],
            penalty: None,
        };
        Arc::new(Directory::new(&[user], &[], &["pbx1"]).unwrap())
    }

    const HERE: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
    const THERE: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

    #[test]
    fn delays_double_from_the_fourth_failure_up_to_a_minute() {
        let at = |count| {
            Failures {
                count,
                last: Instant::now(),
            }
            .delay()
        };
        assert_eq!(at(3), Duration::ZERO);
        assert_eq!(at(4), Duration::from_secs(1));
        assert_eq!(at(5), Duration::from_secs(2));
        assert_eq!(at(8), Duration::from_secs(16));
        assert_eq!(at(20), MAX_DELAY);
        assert_eq!(at(u32::MAX), MAX_DELAY);
    }

    #[tokio::test]
    async fn failures_throttle_the_name_and_the_address_and_a_success_clears_them() {
        let logins = Logins::new(2);
        let dir = directory();
        for _ in 0..FREE_FAILURES + 1 {
            let e = logins
                .check(dir.clone(), "tweber", "wrong".into(), HERE)
                .await;
            assert_eq!(e.unwrap_err(), LoginError::Wrong);
        }
        // The name is throttled, from anywhere, even with the right password …
        let e = logins
            .check(dir.clone(), "tweber", "right".into(), THERE)
            .await;
        assert!(matches!(e, Err(LoginError::Throttled(_))), "{e:?}");
        // … and so is the address, for any name.
        let e = logins.check(dir.clone(), "nobody", "x".into(), HERE).await;
        assert!(matches!(e, Err(LoginError::Throttled(_))), "{e:?}");
        // Unknown names are counted like known ones.
        let e = logins.check(dir.clone(), "nobody", "x".into(), THERE).await;
        assert_eq!(e.unwrap_err(), LoginError::Wrong);
        logins.lock().clear();
        let u = logins.check(dir.clone(), "340", "right".into(), HERE).await;
        assert_eq!(
            u.unwrap().name,
            "tweber",
            "the extension number names the user"
        );
        assert!(logins.lock().is_empty());
    }

    #[tokio::test]
    async fn a_login_that_finds_no_free_slot_is_busy() {
        let logins = Logins::new(1);
        let _held = logins.permits.clone().acquire_owned().await.unwrap();
        tokio::time::pause();
        let e = logins
            .check(directory(), "tweber", "right".into(), HERE)
            .await;
        assert_eq!(e.unwrap_err(), LoginError::Busy);
        assert_eq!(LoginError::Busy.retry_after_secs(), 2);
    }

    #[test]
    fn the_failure_table_is_bounded() {
        let logins = Logins::new(1);
        let now = Instant::now();
        for i in 0..MAX_TRACKED + 10 {
            logins.failed(
                [Key::User(format!("u{i}")), Key::Source(HERE)],
                now + Duration::from_millis(i as u64),
            );
        }
        assert!(logins.lock().len() <= MAX_TRACKED);
        assert!(logins.lock().contains_key(&Key::Source(HERE)));
    }
}
