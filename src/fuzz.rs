//! The checks the `cargo fuzz` targets run (`fuzz/fuzz_targets/`), here so that `cargo test`
//! replays the committed corpus (`fuzz/corpus/<target>/`) through exactly the same code.
//!
//! Each takes arbitrary bytes and panics only when an invariant breaks: the parsers must refuse
//! what they cannot read with an error, never a panic, and the router must answer every request
//! without a server error.

use std::collections::HashMap;

use bytes::BytesMut;
use serde_json::{json, Value};
use tokio_util::codec::Decoder;

use crate::ami::{AmiCodec, Frame};
use crate::config::Config;
use crate::http::portsip::odata::{self, Field, Type};

fn decode_parts(parts: &[&[u8]]) -> Vec<Frame> {
    let mut codec = AmiCodec::new(4096);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for p in parts {
        buf.extend_from_slice(p);
        while let Ok(Some(f)) = codec.decode(&mut buf) {
            out.push(f);
        }
    }
    while let Ok(Some(f)) = codec.decode_eof(&mut buf) {
        out.push(f);
    }
    out
}

/// The AMI decoder: any bytes, fed in two chunks at a split the first byte chooses, decode
/// without a panic, and the split does not change what is decoded.
pub fn decode(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let at = (usize::from(split) * data.len()) / 256;
    let whole = decode_parts(&[data]);
    let parts = decode_parts(&[&data[..at], &data[at..]]);
    assert_eq!(whole, parts);
}

const FIELDS: &[Field] = &[
    ("name", Type::Text),
    ("extension_number", Type::Text),
    ("ring_time", Type::Number),
    ("enabled", Type::Bool),
];

/// PortSIP's list options: lines `key=value` (filter, search, orderby, skip, top, with or
/// without `$`) parse to a query or a clear error, and a query applies to any items.
pub fn portsip_query(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let params: HashMap<String, String> = text
        .split('\n')
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    if let Ok(q) = odata::ListQuery::parse(&params, FIELDS) {
        let items = vec![
            json!({"name": "Sales", "extension_number": "8001", "ring_time": 20, "enabled": true}),
            json!({"name": null, "extension_number": 8002, "ring_time": "x"}),
            json!({}),
        ];
        let (count, page) = q.apply(items, FIELDS);
        assert!(count <= 3 && page.len() <= count);
    }
}

/// A pascom command: any XML parses to an element or an error, and any element to a request
/// (with its subscriptions) or a readable refusal.
pub fn pascom_command(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(element) = text.parse::<tokio_xmpp::minidom::Element>() else {
        return;
    };
    if let Ok(req) = crate::xmpp::pascom::parse_request(&element) {
        let _ = req.full_name();
        let _ = crate::xmpp::pascom::Subscription::parse_list(&req.body);
        for a in ["queue", "name", "reason", "penalty", "jid"] {
            let _ = req.attr(a);
        }
    }
}

/// The configuration loader: any text is a configuration or an error naming the problem;
/// an error never shows the value written on a line whose key names a secret (`secret`,
/// `token`, `password`, `hash`).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(text, "fuzz") {
        Ok(c) => {
            let _ = c.directory();
        }
        Err(e) => {
            // Keys are named by the message (a bare key is repeated): text that is some line's
            // key is no leak, even when it contains a secret line's value. Keys are blotted
            // out of both messages compared below, with a mark no value is made of.
            let scrub = |message: String| {
                text.lines()
                    .map(|l| l.split_once('=').map_or(l, |(k, _)| k).trim())
                    .map(|k| k.trim_matches(['[', ']', '"', '\'']).trim())
                    .filter(|k| k.len() >= 8)
                    .fold(message, |m, k| m.replace(k, "\u{0}\u{1}\u{0}"))
            };
            let shown = scrub(e.to_string());
            for (n, line) in text.lines().enumerate() {
                let Some((key, value)) = line.split_once('=') else {
                    continue;
                };
                let key = key.to_ascii_lowercase();
                let value = value.trim().trim_matches(['"', '\'']);
                if ["secret", "token", "password", "hash"]
                    .iter()
                    .any(|h| key.contains(h))
                    && value.len() >= 8
                    && !key.contains(value)
                    && shown.contains(value)
                {
                    // Shown: a leak, unless the message says it whatever this line's value (the
                    // fuzzer makes values out of the message's words, or of other lines' keys).
                    // Every other byte as it was: line ends included, and no newline added
                    // after the last line (that would move an error about the text's end).
                    let other: String = text
                        .split_inclusive('\n')
                        .enumerate()
                        .map(|(i, l)| match (i == n, l.split_once('=')) {
                            (true, Some((k, v))) => {
                                format!("{k}={}", v.replace(value, &"Q".repeat(value.len())))
                            }
                            _ => l.to_owned(),
                        })
                        .collect();
                    let again = Config::parse(&other, "fuzz")
                        .err()
                        .map(|e| scrub(e.to_string()));
                    // The same message whatever this line's value: not this line's value.
                    assert!(
                        again.is_some_and(|m| m.contains(value)),
                        "the value of a secret line shown: {shown}"
                    );
                }
            }
        }
    }
}

/// The whole HTTP router of a daemon whose Asterisk is unreachable, with a signed-in user in
/// each dialect: any method, path, query and body gets an answer that is not a server error
/// (503 and 504, "Asterisk unreachable", are answers).
pub struct Router {
    runtime: tokio::runtime::Runtime,
    router: axum::Router,
    tokens: Vec<(&'static str, String)>,
    _shutdown: tokio_util::sync::CancellationToken,
}

const METHODS: [&str; 4] = ["GET", "POST", "DELETE", "PUT"];

impl Router {
    /// Starts the daemon's parts (no listener) with `dir` as the state directory, and signs a
    /// user in to each dialect.
    pub fn new(dir: &std::path::Path) -> anyhow::Result<Self> {
        let hash = crate::access::hash_password("pw").map_err(anyhow::Error::msg)?;
        let text = format!(
            "state_dir = {:?}\n[http]\nlisten = \"127.0.0.1:0\"\ntoken = \"fuzz-token-0123456789\"\n\
             [[ami]]\nid = \"pbx1\"\nhost = \"127.0.0.1\"\nport = 1\nusername = \"u\"\nsecret = \"s\"\n\
             reconnect_max = 60.0\n[[queues]]\nserver = \"pbx1\"\nname = \"sales\"\nid = 1\n\
             [[users]]\nname = \"boss\"\npassword_hash = \"{hash}\"\ninterface = \"Local/1@agents/n\"\n\
             extension = \"201\"\nroles = [\"admin\"]\nqueues = [\"sales\"]\n\
             [[pause_reasons]]\ncode = \"*01\"\nreason = \"Lunch\"\n",
            dir.display().to_string()
        );
        let config = Config::parse(&text, "fuzz")?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let shutdown = tokio_util::sync::CancellationToken::new();
        let (router, tokens) = runtime.block_on(async {
            let tasks = tokio_util::task::TaskTracker::new();
            let parts = crate::wiring::start(
                &config,
                crate::systemd::Notifier::silent(),
                &tasks,
                &shutdown,
            )?;
            let app = crate::http::AppState::new(&parts, &config, shutdown.clone());
            let router = crate::http::body::with_body_limit(crate::http::router(app), 64 * 1024);
            let mut tokens = vec![("@N", "fuzz-token-0123456789".to_owned())];
            for (marker, path, body, field) in [
                (
                    "@Y",
                    "/openapi/v1.0/get_token",
                    json!({"username": "boss", "password": "pw"}),
                    "access_token",
                ),
                (
                    "@X",
                    "/auth/login",
                    json!({"username": "boss", "password": "pw"}),
                    "token",
                ),
                (
                    "@P",
                    "/api/auth/sign_in",
                    json!({"username": "boss", "password": "pw"}),
                    "access_token",
                ),
            ] {
                let (_, v) = call(&router, "POST", path, &[], body.to_string().into_bytes()).await;
                let token = v[field].as_str().unwrap_or_default().to_owned();
                anyhow::ensure!(!token.is_empty(), "no {marker} token: {v}");
                tokens.push((marker, token));
            }
            anyhow::Ok((router, tokens))
        })?;
        Ok(Self {
            runtime,
            router,
            tokens,
            _shutdown: shutdown,
        })
    }

    /// One request from bytes: the first selects the method, the second whether a bearer
    /// header is sent (the native, then the PortSIP token); then `path?query`, a newline and
    /// the body. `@N`, `@Y`, `@X`, `@P` in the path stand for the native, Yeastar, Telecom X and
    /// PortSIP tokens.
    pub fn request(&self, data: &[u8]) {
        let [m, flags, rest @ ..] = data else {
            return;
        };
        let method = METHODS[usize::from(*m) % METHODS.len()];
        let (target, body) = match rest.iter().position(|b| *b == b'\n') {
            Some(i) => (&rest[..i], rest[i + 1..].to_vec()),
            None => (rest, Vec::new()),
        };
        let mut path = String::from_utf8_lossy(target).into_owned();
        for (marker, token) in &self.tokens {
            path = path.replace(marker, token);
        }
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let mut headers = Vec::new();
        match flags % 3 {
            1 => headers.push(format!("Bearer {}", self.tokens[0].1)),
            2 => headers.push(format!("Bearer {}", self.tokens[3].1)),
            _ => {}
        }
        let (status, body) =
            self.runtime
                .block_on(call(&self.router, method, &path, &headers, body));
        assert!(
            status < 500 || status == 503 || status == 504,
            "{method} {path}: {status} {body}"
        );
    }
}

async fn call(
    router: &axum::Router,
    method: &str,
    path: &str,
    authorization: &[String],
    body: Vec<u8>,
) -> (u16, Value) {
    use tower_service::Service;
    let Ok(uri) = path.parse::<axum::http::Uri>() else {
        return (400, Value::Null);
    };
    let mut req = axum::http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("user-agent", "fuzz");
    for a in authorization {
        req = req.header("authorization", a);
    }
    let Ok(req) = req.body(axum::body::Body::from(body)) else {
        return (400, Value::Null);
    };
    let Ok(response) = router.clone().call(req).await;
    let status = response.status().as_u16();
    // Event streams never end: read what is there, not to the end.
    let bytes = tokio::time::timeout(
        std::time::Duration::from_millis(50),
        axum::body::to_bytes(response.into_body(), 1 << 20),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}
