//! Agent commands in the native API, through the command layer, with the service's rights.
//!
//! * `POST   /api/v1/queues/{server}/{name}/members` — log in (`QueueAdd`);
//! * `DELETE /api/v1/queues/{server}/{name}/members/{interface}` — log out (`QueueRemove`);
//! * `POST   /api/v1/queues/{server}/{name}/members/{interface}/pause` — pause or unpause;
//! * `POST   /api/v1/queues/{server}/{name}/members/{interface}/penalty`;
//! * `POST   /api/v1/servers/{server}/members/{interface}/pause` — in every queue of the member;
//! * `GET    /api/v1/pause_reasons`.
//!
//! `{interface}` is URL-encoded (`Local%2F340%40agents%2Fn`). Success is `200
//! {"result":"applied"|"unchanged"}`; failure is the command's code as `error`, with its status.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::access::Principal;
use crate::command::{Command, Done};
use crate::http::{ApiError, AppState};

/// A JSON body, or a 400 in our error format naming what is wrong with it.
fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text())))
}

async fn run(app: &AppState, server: &str, command: Command) -> Result<Json<Value>, ApiError> {
    let done = app
        .commands
        .execute(&Principal::Service, server, command)
        .await?;
    let result = match done {
        Done::Applied => "applied",
        Done::Unchanged => "unchanged",
    };
    Ok(Json(json!({ "result": result })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginBody {
    interface: String,
    #[serde(default)]
    member_name: String,
    #[serde(default)]
    state_interface: String,
    /// Absent: the penalty of the user whose interface it is, else 0.
    #[serde(default)]
    penalty: Option<i64>,
    #[serde(default)]
    paused: bool,
    #[serde(default)]
    reason: String,
}

pub async fn login(
    State(app): State<AppState>,
    Path((server, queue)): Path<(String, String)>,
    b: Result<Json<LoginBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let command = Command::Login {
        queue,
        interface: b.interface,
        member_name: b.member_name,
        state_interface: b.state_interface,
        penalty: b.penalty,
        paused: b.paused.then_some(b.reason),
    };
    run(&app, &server, command).await
}

pub async fn logout(
    State(app): State<AppState>,
    Path((server, queue, interface)): Path<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    run(&app, &server, Command::Logout { queue, interface }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PauseBody {
    paused: bool,
    #[serde(default)]
    reason: String,
}

impl PauseBody {
    /// The pause of `interface` in `queue`, or in every queue of its server.
    fn command(self, queue: Option<String>, interface: String) -> Command {
        Command::Pause {
            queue,
            interface,
            paused: self.paused,
            reason: self.reason,
        }
    }
}

pub async fn pause(
    State(app): State<AppState>,
    Path((server, queue, interface)): Path<(String, String, String)>,
    b: Result<Json<PauseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let command = body(b)?.command(Some(queue), interface);
    run(&app, &server, command).await
}

pub async fn pause_everywhere(
    State(app): State<AppState>,
    Path((server, interface)): Path<(String, String)>,
    b: Result<Json<PauseBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let command = body(b)?.command(None, interface);
    run(&app, &server, command).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PenaltyBody {
    penalty: i64,
}

pub async fn penalty(
    State(app): State<AppState>,
    Path((server, queue, interface)): Path<(String, String, String)>,
    b: Result<Json<PenaltyBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let b = body(b)?;
    let command = Command::Penalty {
        queue: Some(queue),
        interface,
        penalty: b.penalty,
    };
    run(&app, &server, command).await
}

pub async fn pause_reasons(State(app): State<AppState>) -> Json<Value> {
    let directory = app.commands.access().directory();
    Json(json!({ "pause_reasons": directory.pause_reasons() }))
}
