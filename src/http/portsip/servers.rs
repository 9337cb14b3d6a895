//! Call queue servers: the Asterisk servers queuebridge connects to (rest-dialects.md §1.6).
//!
//! Every endpoint is for admins. `[[ami]]` servers are `INTERNAL` (they can be switched off and
//! on, not destroyed); servers added here are `EXTERNAL`, connected at once and kept in
//! `state_dir/servers.json`. An AMI secret is never part of any answer.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Admin;
use super::odata::{Field, Type};
use super::{body, invalid, invalid_fields, not_found, paged, server_error, Result};
use crate::http::AppState;
use crate::servers::{NewServer, Origin, ServerInfo};
use crate::view;

const FIELDS: &[Field] = &[
    ("id", Type::Text),
    ("name", Type::Text),
    ("enabled", Type::Bool),
    ("type", Type::Text),
    ("ipv4", Type::Text),
    ("ipv6", Type::Text),
];

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/call_queue_servers", get(list).post(create))
        .route("/call_queue_servers/{id}", get(show).post(update))
        .route("/call_queue_servers/{id}/status", get(status))
        .route("/call_queue_servers/{id}/destroy", post(destroy))
}

fn view(s: &ServerInfo) -> Value {
    let mut v = json!({
        "id": s.id,
        "name": s.name,
        "enabled": s.enabled,
        "type": match s.origin { Origin::Internal => "INTERNAL", Origin::External => "EXTERNAL" },
    });
    // The one address field that applies; the other is absent (the schema has no null).
    let field = match s.host.parse::<IpAddr>() {
        Ok(IpAddr::V6(_)) => "ipv6",
        // An IPv4 address, or a host name: PortSIP has no field for names.
        _ => "ipv4",
    };
    v[field] = json!(s.host);
    v
}

/// A syntactically possible server id (else 400 "Invalid server id supplied").
fn checked(id: &str) -> Result<&str> {
    if !id.is_empty()
        && id.len() <= 128
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
    {
        Ok(id)
    } else {
        Err(invalid("Invalid server id supplied"))
    }
}

fn find(app: &AppState, id: &str) -> Result<ServerInfo> {
    app.servers
        .get(checked(id)?)
        .ok_or_else(|| not_found("Server not found"))
}

async fn list(
    State(app): State<AppState>,
    _: Admin,
    Query(params): Query<HashMap<String, String>>,
) -> Result<Json<Value>> {
    let items = app.servers.list().iter().map(view).collect();
    paged(&params, FIELDS, items)
}

async fn show(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    Ok(Json(view(&find(&app, &id)?)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Create {
    name: String,
    #[serde(default = "yes")]
    enabled: bool,
    #[serde(default)]
    ipv4: Option<String>,
    #[serde(default)]
    ipv6: Option<String>,
    /// queuebridge's additions: the AMI account, when not `[portsip]`'s.
    #[serde(default)]
    ami_port: Option<u16>,
    #[serde(default)]
    ami_username: Option<String>,
    #[serde(default)]
    ami_secret: Option<String>,
}

fn yes() -> bool {
    true
}

async fn create(
    State(app): State<AppState>,
    _: Admin,
    b: Result<Json<Create>, JsonRejection>,
) -> Result<(StatusCode, Json<Value>)> {
    let b = body(b)?;
    let name = b.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 64 {
        return Err(invalid_fields(&["name"], "name must be 1 to 64 characters"));
    }
    let blank = |s: &Option<String>| {
        s.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let host = match (blank(&b.ipv4), blank(&b.ipv6)) {
        (Some(v4), _) => {
            v4.parse::<Ipv4Addr>()
                .map_err(|_| invalid_fields(&["ipv4"], format!("{v4:?} is not an IPv4 address")))?;
            v4
        }
        (None, Some(v6)) => {
            v6.parse::<Ipv6Addr>()
                .map_err(|_| invalid_fields(&["ipv6"], format!("{v6:?} is not an IPv6 address")))?;
            v6
        }
        (None, None) => {
            return Err(invalid_fields(
                &["ipv4", "ipv6"],
                "at least one of ipv4 or ipv6 must be specified",
            ))
        }
    };
    let defaults = &app.portsip;
    let username = b
        .ami_username
        .or_else(|| defaults.server_username.clone())
        .filter(|u| !u.is_empty());
    let secret = b.ami_secret.or_else(|| defaults.server_secret.clone());
    let (Some(username), Some(secret)) = (username, secret) else {
        return Err(invalid_fields(
            &["ami_username", "ami_secret"],
            "no AMI account for the new server: set [portsip] server_username and \
             server_secret, or send ami_username and ami_secret",
        ));
    };
    let id = app
        .servers
        .add(NewServer {
            name,
            host,
            port: b.ami_port.unwrap_or(defaults.server_port),
            username,
            secret,
            enabled: b.enabled,
        })
        .await
        .map_err(server_error)?;
    Ok((StatusCode::CREATED, Json(json!({ "id": id }))))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    enabled: bool,
}

async fn update(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
    b: Result<Json<Update>, JsonRejection>,
) -> Result<StatusCode> {
    let server = find(&app, &id)?;
    let b = body(b)?;
    app.servers
        .set_enabled(&server.id, b.enabled)
        .await
        .map_err(server_error)?;
    Ok(StatusCode::OK)
}

async fn destroy(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let server = find(&app, &id)?;
    app.servers.remove(&server.id).await.map_err(server_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// `ONLINE` while the AMI link is up and synced. Memory use is what `core show sysinfo` tells
/// (used = total − free − buffers, percent); Asterisk reports no CPU figure, so `cpu_usage` is 0.
async fn status(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let server = find(&app, &id)?;
    let online = app.hub.read(|s| view::link_up(s, &server.id));
    // A failed read only means an unknown figure.
    let memory = match online {
        true => app.servers.memory_usage(&server.id).await,
        false => None,
    };
    Ok(Json(json!({
        "cpu_usage": 0,
        "memory_usage": memory.unwrap_or(0),
        "status": if online { "ONLINE" } else { "OFFLINE" },
    })))
}
