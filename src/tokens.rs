//! Bearer tokens of the vendor dialects: random, in memory, with lifetimes and a cap per user.
//!
//! A token names a user, not a copy of the user: every request resolves the name in the current
//! directory, so a user removed by a reload loses access at once. An access token and the
//! refresh token issued with it are a pair: signing out with one ends both. A user holds at most
//! `per_user` live tokens of each kind: beyond that, issuing an access token is refused, and
//! issuing a refresh token drops the user's oldest. Tokens live in memory only; a
//! restart of queuebridge signs everyone out, as a PBX restart does.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::{OsRng, RngCore};

/// What a token is good for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Access,
    Refresh,
}

#[derive(Clone, Debug)]
struct Entry {
    user: String,
    kind: Kind,
    expires: Instant,
    /// The other token of the pair it was issued in.
    pair: Option<String>,
}

/// Why a token could not be issued.
#[derive(Debug, PartialEq, Eq)]
pub struct TooMany;

/// One dialect's tokens.
#[derive(Debug)]
pub struct Tokens {
    entries: Mutex<HashMap<String, Entry>>,
    /// Most live access tokens per user.
    per_user: usize,
}

/// 32 characters from [A-Za-z0-9], from the operating system's random source.
pub fn random_token() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    // 256 is 4 × 62 + 8: the bias toward the first 8 letters is negligible for a bearer secret.
    bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect()
}

impl Tokens {
    pub fn new(per_user: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            per_user,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Issues an access token for `user`, valid for `ttl`, unless the user already has
    /// `per_user` live ones.
    pub fn issue_access(&self, user: &str, ttl: Duration) -> Result<String, TooMany> {
        let now = Instant::now();
        let mut entries = self.lock();
        entries.retain(|_, e| e.expires > now);
        let live = entries
            .values()
            .filter(|e| e.kind == Kind::Access && e.user == user)
            .count();
        if live >= self.per_user {
            return Err(TooMany);
        }
        Ok(Self::insert(&mut entries, user, Kind::Access, now + ttl))
    }

    /// Issues an access token (valid for `access_ttl`) and a refresh token (`refresh_ttl`) for
    /// `user` as a pair, unless the user already has `per_user` live access tokens.
    pub fn issue_pair(
        &self,
        user: &str,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Result<(String, String), TooMany> {
        let access = self.issue_access(user, access_ttl)?;
        let now = Instant::now();
        let mut entries = self.lock();
        let mine: Vec<(Instant, String)> = entries
            .iter()
            .filter(|(_, e)| e.kind == Kind::Refresh && e.user == user)
            .map(|(t, e)| (e.expires, t.clone()))
            .collect();
        if mine.len() >= self.per_user {
            if let Some((_, oldest)) = mine.into_iter().min() {
                entries.remove(&oldest);
            }
        }
        let refresh = Self::insert(&mut entries, user, Kind::Refresh, now + refresh_ttl);
        for (token, other) in [(&access, &refresh), (&refresh, &access)] {
            if let Some(e) = entries.get_mut(token) {
                e.pair = Some(other.clone());
            }
        }
        Ok((access, refresh))
    }

    fn insert(
        entries: &mut HashMap<String, Entry>,
        user: &str,
        kind: Kind,
        expires: Instant,
    ) -> String {
        let token = random_token();
        let entry = Entry {
            user: user.to_owned(),
            kind,
            expires,
            pair: None,
        };
        entries.insert(token.clone(), entry);
        token
    }

    /// The user a live token of `kind` belongs to.
    pub fn user(&self, token: &str, kind: Kind) -> Option<String> {
        let entries = self.lock();
        let e = entries.get(token)?;
        (e.kind == kind && e.expires > Instant::now()).then(|| e.user.clone())
    }

    /// Extends a live token to `ttl` from now; false when it is not live.
    pub fn extend(&self, token: &str, ttl: Duration) -> bool {
        let now = Instant::now();
        match self.lock().get_mut(token) {
            Some(e) if e.expires > now => {
                e.expires = e.expires.max(now + ttl);
                true
            }
            _ => false,
        }
    }

    /// Revokes every token of `user`; how many were live.
    pub fn revoke_user(&self, user: &str) -> usize {
        let now = Instant::now();
        let mut entries = self.lock();
        let before = entries.len();
        entries.retain(|_, e| e.user != user && e.expires > now);
        before - entries.len()
    }

    /// Revokes a token and the other token of its pair (sign-out); true when it was live.
    pub fn revoke(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(e) = entries.remove(token) else {
            return false;
        };
        if let Some(pair) = &e.pair {
            entries.remove(pair);
        }
        e.expires > now
    }

    /// Spends a refresh token: it alone ends (the access token of its pair lives on); true when
    /// it was live.
    pub fn spend(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut entries = self.lock();
        let Some(e) = entries.remove(token) else {
            return false;
        };
        if let Some(other) = e.pair.as_ref().and_then(|p| entries.get_mut(p)) {
            other.pair = None;
        }
        e.expires > now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_are_revoked_and_are_capped() {
        let t = Tokens::new(2);
        let a = t.issue_access("u", Duration::from_secs(60)).unwrap();
        assert_eq!(t.user(&a, Kind::Access).as_deref(), Some("u"));
        assert_eq!(t.user(&a, Kind::Refresh), None);
        let _b = t.issue_access("u", Duration::from_secs(60)).unwrap();
        assert_eq!(t.issue_access("u", Duration::from_secs(60)), Err(TooMany));
        assert!(t.issue_access("v", Duration::from_secs(60)).is_ok());
        assert!(t.revoke(&a));
        assert!(!t.revoke(&a));
        assert_eq!(t.user(&a, Kind::Access), None);
        assert!(t.issue_access("u", Duration::from_secs(60)).is_ok());
        let gone = t.issue_access("w", Duration::ZERO).unwrap();
        let (_, r) = t
            .issue_pair("v", Duration::from_secs(60), Duration::from_secs(60))
            .unwrap();
        assert_eq!(t.user(&r, Kind::Refresh).as_deref(), Some("v"));
        assert_eq!(t.user(&gone, Kind::Access), None);
        assert_ne!(random_token(), random_token());
        assert_eq!(random_token().len(), 32);
    }

    #[test]
    fn signing_out_ends_the_pair_and_refresh_tokens_are_capped() {
        let t = Tokens::new(2);
        let ttl = Duration::from_secs(60);
        let (a, r) = t.issue_pair("u", ttl, ttl).unwrap();
        assert!(t.revoke(&a));
        assert_eq!(
            t.user(&r, Kind::Refresh),
            None,
            "sign-out ends the refresh token"
        );
        let (a, r) = t.issue_pair("u", ttl, ttl).unwrap();
        assert!(t.spend(&r));
        assert_eq!(
            t.user(&a, Kind::Access).as_deref(),
            Some("u"),
            "a refresh keeps it"
        );
        assert!(t.revoke(&a));
        // Refresh tokens outlive their access tokens; the oldest goes beyond the cap.
        let mut refresh = Vec::new();
        for _ in 0..5 {
            let (a, r) = t.issue_pair("u", ttl, ttl).unwrap();
            t.spend(&a);
            refresh.push(r);
            std::thread::sleep(Duration::from_millis(2));
        }
        let live = refresh
            .iter()
            .filter(|r| t.user(r, Kind::Refresh).is_some())
            .count();
        assert_eq!(live, 2);
        assert!(t.user(&refresh[4], Kind::Refresh).is_some());
    }
}
