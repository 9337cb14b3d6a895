//! The native API, under `/api/v1` (every request with `Authorization: Bearer <http.token>`):
//!
//! * `GET /api/v1/queues` — every server's link and every queue, with members and callers;
//! * `GET /api/v1/queues/{name}` — one queue (when the name is unique across servers);
//! * `GET /api/v1/queues/{server}/{name}` — one queue of one server;
//! * `GET /api/v1/events` — SSE: a snapshot, then every change (see [`sse`]);
//! * agent commands: log in, log out, pause, penalty (see [`members`]).

pub mod members;
pub mod sse;

use axum::extract::{Path, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use super::{auth, ApiError, AppState};
use crate::state::Queue;

/// The native API's routes, each behind the API token.
pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
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
        .route_layer(middleware::from_fn_with_state(state, require_token))
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
