//! The native HTTP API (axum): queues as JSON, changes as Server-Sent Events, health.
//!
//! * `GET /healthz` — 200 when every AMI link is up and synced, 503 with the reasons otherwise;
//! * `GET /api/v1/queues` — every server's link and every queue, with members and callers;
//! * `GET /api/v1/queues/{name}` — one queue (when the name is unique across servers);
//! * `GET /api/v1/queues/{server}/{name}` — one queue of one server;
//! * `GET /api/v1/events` — SSE: a snapshot, then every change (see [`sse`]);
//! * agent commands: log in, log out, pause, penalty (see [`members`]).
//!
//! The Yeastar P-Series dialect is served under `/openapi/v1.0` (see [`yeastar`]), the
//! Telecom X dialect under `/auth` and `/pbx` (see [`telecomx`]), the PortSIP dialect under
//! `/api` (see [`portsip`]).
//!
//! Everything under `/api/v1` needs `Authorization: Bearer <http.token>`.

pub mod auth;
mod error;
pub mod members;
pub mod portsip;
pub mod push;
pub mod serve;
pub mod sse;
pub mod telecomx;
pub mod yeastar;

use std::sync::{Arc, RwLock};

use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
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
use crate::state::Queue;
use crate::tokens::Tokens;
use crate::wiring::Parts;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub hub: Arc<Hub>,
    /// Agent commands, checked and confirmed.
    pub commands: Commands,
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
    let api = Router::new()
        .route("/queues", get(list_queues))
        .route("/queues/{name}", get(one_queue))
        .route("/queues/{server}/{name}", get(server_queue))
        .route("/events", get(sse::events))
        .route("/queues/{server}/{name}/members", post(members::login))
        .route(
            "/queues/{server}/{name}/members/{interface}",
            delete(members::logout),
        )
        .route(
            "/queues/{server}/{name}/members/{interface}/pause",
            post(members::pause),
        )
        .route(
            "/queues/{server}/{name}/members/{interface}/penalty",
            post(members::penalty),
        )
        .route(
            "/servers/{server}/members/{interface}/pause",
            post(members::pause_everywhere),
        )
        .route("/pause_reasons", get(members::pause_reasons))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token));
    Router::new()
        .route("/healthz", get(healthz))
        .nest("/api/v1", api)
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

async fn require_token(State(app): State<AppState>, req: Request, next: Next) -> Response {
    match auth::bearer(req.headers()) {
        Some(t) if auth::same_secret(t.as_bytes(), app.api_token().as_bytes()) => {
            next.run(req).await
        }
        Some(_) => ApiError::Unauthorized("invalid bearer token").into_response(),
        None => ApiError::Unauthorized("missing bearer token").into_response(),
    }
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

async fn list_queues(State(app): State<AppState>) -> Response {
    Json(app.hub.read(|s| s.snapshot())).into_response()
}

async fn one_queue(
    State(app): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Queue>, ApiError> {
    let found: Vec<Queue> = app
        .hub
        .read(|s| s.queues().filter(|q| *q.name == *name).cloned().collect());
    match found.len() {
        0 => Err(ApiError::NotFound(format!("no queue named {name:?}"))),
        1 => Ok(Json(
            found.into_iter().next().unwrap_or_else(|| unreachable!()),
        )),
        _ => Err(ApiError::Ambiguous(format!(
            "queue {name:?} exists on servers {}; use /api/v1/queues/{{server}}/{name}",
            found
                .iter()
                .map(|q| &*q.server)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

async fn server_queue(
    State(app): State<AppState>,
    Path((server, name)): Path<(String, String)>,
) -> Result<Json<Queue>, ApiError> {
    app.hub
        .read(|s| {
            if !s.servers.contains_key(server.as_str()) {
                return Err(ApiError::NotFound(format!("no server {server:?}")));
            }
            s.queue(&server, &name).cloned().ok_or_else(|| {
                ApiError::NotFound(format!("no queue {name:?} on server {server:?}"))
            })
        })
        .map(Json)
}
