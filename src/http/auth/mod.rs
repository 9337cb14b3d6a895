//! Who is asking, for every HTTP front end: where each dialect carries its token (a bearer
//! header, a query parameter, a cookie), the one lookup from token to signed-in user, the
//! constant-time comparison of the native API's token, and the password checks of every login
//! ([`logins`]: bounded, throttled, timed alike for known and unknown users).
//!
//! Each dialect wraps [`signed_in`] in its own axum extractors (a signed-in user, an admin)
//! whose rejection is that vendor's error, so its handlers start with the user, not with a
//! token preamble.

mod logins;

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{header, HeaderMap};

pub use logins::{LoginError, Logins, Source};

use super::AppState;
use crate::access::User;
use crate::tokens::{Kind, Tokens};

/// Compares in time independent of where the strings differ.
pub fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The token of an `Authorization: Bearer …` header; an empty one is none.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The token in query parameter `name`, else in the cookie of that name; an empty one is none.
pub fn query_or_cookie(
    params: &HashMap<String, String>,
    headers: &HeaderMap,
    name: &str,
) -> Option<String> {
    if let Some(t) = params.get(name).filter(|t| !t.is_empty()) {
        return Some(t.clone());
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (key, value) = pair.trim().split_once('=')?;
            (key == name && !value.is_empty()).then(|| value.to_owned())
        })
}

/// The user an access token of `tokens` was issued to, as the current directory has them: a
/// user removed by a reload is signed out everywhere.
pub fn signed_in(app: &AppState, tokens: &Tokens, token: &str) -> Option<Arc<User>> {
    let name = tokens.user(token, Kind::Access)?;
    app.commands.access().directory().user(&name).cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_found_where_each_dialect_carries_them() {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Bearer  abc ".parse().unwrap());
        headers.insert(header::COOKIE, "a=1; token=xyz; b=2".parse().unwrap());
        assert_eq!(bearer(&headers), Some("abc"));
        let none = HashMap::new();
        assert_eq!(
            query_or_cookie(&none, &headers, "token").as_deref(),
            Some("xyz")
        );
        let query = HashMap::from([("token".to_owned(), "q".to_owned())]);
        assert_eq!(
            query_or_cookie(&query, &headers, "token").as_deref(),
            Some("q")
        );
        assert_eq!(query_or_cookie(&none, &headers, "other"), None);
        headers.insert(header::AUTHORIZATION, "Bearer ".parse().unwrap());
        assert_eq!(bearer(&headers), None);
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"ab"));
    }
}
