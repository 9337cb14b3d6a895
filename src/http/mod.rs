//! The native HTTP API (axum): queues as JSON, changes as Server-Sent Events, health.
//!
//! * `GET /healthz` — 200 when every AMI link is up and synced, 503 with the reasons otherwise;
//! * the native API under `/api/v1`: queues as JSON, changes as SSE, agent commands (see
//!   [`native`]).
//!
//! The Yeastar P-Series dialect is served under `/openapi/v1.0` (see [`yeastar`]), the
//! Telecom X dialect under `/auth` and `/pbx` (see [`telecomx`]), the PortSIP dialect under
//! `/api` (see [`portsip`]).
//!
//! Everything under `/api/v1` needs `Authorization: Bearer <http.token>`.

pub mod auth;
pub mod body;
mod error;
pub mod native;
pub mod portsip;
pub mod push;
pub mod serve;
pub mod telecomx;
pub mod yeastar;

use std::sync::{Arc, RwLock};

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use error::ApiError;

use crate::command::Commands;
use crate::config::{Config, PortsipConfig};
use crate::deadlines::Deadlines;
use crate::history::History;
use crate::hub::Hub;
use crate::queues_conf::QueuesConf;
use crate::servers::Servers;
use crate::tokens::Tokens;
use crate::wiring::Parts;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Agent commands, checked and confirmed.
    pub commands: Commands,
    /// The AMI connections, for what manages or lists them (PortSIP's queue servers and queue
    /// definitions, Telecom X's hosts); agent commands go through `commands`.
    pub servers: Arc<Servers>,
    /// Timed unpause and relogin (Yeastar's thresholds).
    pub deadlines: Arc<Deadlines>,
    /// Calls that left a queue.
    pub history: History,
    /// Tokens of the Yeastar dialect.
    pub yeastar_tokens: Arc<Tokens>,
    /// Tokens of the Telecom X dialect.
    pub telecomx_tokens: Arc<Tokens>,
    /// Tokens of the PortSIP dialect.
    pub portsip_tokens: Arc<Tokens>,
    /// `[portsip]`: the AMI account of servers added at run time.
    pub portsip: Arc<PortsipConfig>,
    /// Queue definitions through Asterisk (the PortSIP dialect's queue management).
    pub queues_conf: QueuesConf,
    /// The native API's bearer token; replaced on reload.
    pub token: Arc<RwLock<Arc<str>>>,
    /// One permit per open SSE stream or event-push socket.
    pub streams: Arc<Semaphore>,
    /// Open Yeastar event-push sockets per user.
    pub yeastar_sockets: Arc<push::PerUser>,
    /// PortSIP's `/wsi`: queue management events and signed-in sockets per user.
    pub portsip_events: Arc<portsip::wsi::Management>,
    /// Password checks of every dialect's login: bounded and throttled.
    pub logins: Arc<auth::Logins>,
    /// Cancelled at shutdown: SSE streams end cleanly.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// The native API's bearer token now.
    pub fn api_token(&self) -> Arc<str> {
        self.token.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Handler state over the daemon's running parts.
    pub fn new(parts: &Parts, config: &Config, shutdown: CancellationToken) -> Self {
        Self {
            hub: parts.hub.clone(),
            commands: parts.commands.clone(),
            servers: parts.servers.clone(),
            deadlines: parts.deadlines.clone(),
            history: parts.history.clone(),
            yeastar_tokens: Arc::new(Tokens::new(yeastar::TOKENS_PER_USER)),
            telecomx_tokens: Arc::new(Tokens::new(telecomx::TOKENS_PER_USER)),
            portsip_tokens: Arc::new(Tokens::new(portsip::TOKENS_PER_USER)),
            portsip: Arc::new(config.portsip.clone()),
            queues_conf: QueuesConf::new(parts.servers.clone(), parts.hub.clone()),
            token: Arc::new(RwLock::new(Arc::from(config.http.token.as_str()))),
            streams: Arc::new(Semaphore::new(config.http.max_event_streams)),
            yeastar_sockets: Arc::default(),
            portsip_events: Arc::default(),
            logins: Arc::new(auth::Logins::new(config.http.max_password_checks)),
            shutdown,
        }
    }
}

/// The whole API, ready to serve or to call with `oneshot` in tests.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/api/v1", native::router(state.clone()))
        .nest("/openapi/v1.0", yeastar::router())
        .nest("/api", portsip::router())
        .route("/wsi", get(portsip::wsi::upgrade))
        .merge(telecomx::router())
        .fallback(|| async { ApiError::NotFound("no such endpoint".into()) })
        .layer(middleware::from_fn(count_request))
        .layer(middleware::from_fn(error::request_id))
        .with_state(state)
}

/// Counts every request by route pattern (never the concrete path: bounded labels) and status.
async fn count_request(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let response = next.run(req).await;
    crate::metrics::http_request(route, response.status().as_u16());
    response
}

/// `GET /healthz`: 200 or 503 for anyone (a load balancer or systemd probe needs no secret);
/// the links' details — server ids and failure reasons — only with the API token.
async fn healthz(State(app): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    let detailed = auth::bearer(&headers)
        .is_some_and(|t| auth::same_secret(t.as_bytes(), app.api_token().as_bytes()));
    let (ok, servers) = app.hub.read(|s| {
        let servers: Vec<_> = s
            .servers
            .values()
            .map(|srv| json!({ "id": srv.id, "connected": srv.link.connected, "synced": srv.link.synced, "reason": srv.link.reason }))
            .collect();
        (s.all_synced(), servers)
    });
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = json!({ "status": if ok { "ok" } else { "unavailable" } });
    if detailed {
        body["servers"] = servers.into();
    }
    (status, Json(body)).into_response()
}
