//! A queue's definition through PortSIP: create, update and destroy, every field mapped onto a
//! queues.conf option or AstDB, and a field Asterisk cannot honour refused by name
//! ([`super::queue_fields`]).

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::{json, Value};

use super::auth::Admin;
use super::{body, conf_error, invalid, invalid_fields, not_found, Result};
use crate::http::AppState;
use crate::queues_conf::{ConfError, Exclusive, QueueConf};
use crate::state::Queue;

use super::queue_fields::{apply_fields, attributes, new_definition, QueueBody};
use super::queues::{find, queue_number};

pub(super) async fn create(
    State(app): State<AppState>,
    _: Admin,
    b: Result<Json<QueueBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let mut missing = Vec::new();
    for (field, given) in [
        ("name", b.name.is_some()),
        ("extension_number", b.extension_number.is_some()),
        ("polling_strategy", b.polling_strategy.is_some()),
    ] {
        if !given {
            missing.push(field);
        }
    }
    if !missing.is_empty() {
        return Err(invalid_fields(
            &missing,
            format!("required: {}", missing.join(", ")),
        ));
    }
    let number = b.extension_number.clone().unwrap_or_default();
    if !(3..=64).contains(&number.len()) || !number.bytes().all(|c| c.is_ascii_digit()) {
        return Err(invalid_fields(
            &["extension_number"],
            "must be 3 to 64 digits",
        ));
    }
    if app.hub.read(|s| {
        s.queues()
            .any(|q| *q.name != number && queue_number(q) == number)
    }) {
        return Err(invalid_fields(
            &["extension_number"],
            format!("{number} is already a queue's extension number"),
        ));
    }
    let server = match &b.call_queue_server_id {
        Some(s) => app
            .servers
            .get(s)
            .map(|s| s.id)
            .ok_or_else(|| invalid_fields(&["call_queue_server_id"], "no such server"))?,
        None => app
            .servers
            .list()
            .into_iter()
            .find(|s| s.enabled)
            .map(|s| s.id)
            .ok_or_else(|| invalid("no queue server is enabled"))?,
    };
    let mut conf = new_definition();
    let mut extras = apply_fields(&b, &mut conf)?;
    extras.max_waiting_time = extras.max_waiting_time.or(Some(300));
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    app.queues_conf
        .create(&one, &server, &number, &conf, &attributes(&number, &extras))
        .await
        .map_err(conf_error)?;
    let id = app
        .hub
        .read(|s| s.queue(&server, &number).map(|q| q.id))
        .ok_or_else(|| not_found("the queue vanished right after it was created"))?;
    app.portsip_events
        .publish("queue_created", &server, &number);
    Ok(Json(json!({ "id": id.to_string() })))
}

pub(super) async fn update(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
    b: Result<Json<QueueBody>, JsonRejection>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let b = body(b)?;
    if b.extension_number.is_some() || b.call_queue_server_id.is_some() {
        return Err(invalid_fields(
            &["extension_number"],
            "the extension number of a queue cannot change",
        ));
    }
    let (one, mut conf) = managed_exclusively(&app, &q).await?;
    let extras = apply_fields(&b, &mut conf)?;
    app.queues_conf
        .replace(
            &one,
            &q.server,
            &q.name,
            &conf,
            &attributes(&q.name, &extras),
        )
        .await
        .map_err(conf_error)?;
    app.portsip_events
        .publish("queue_updated", &q.server, &queue_number(&q));
    Ok(StatusCode::OK)
}

/// The queue's definition as queuebridge manages it, read while holding the right to change
/// definitions (one change at a time).
pub(super) async fn managed_exclusively(
    app: &AppState,
    q: &Queue,
) -> Result<(Exclusive, QueueConf)> {
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    let conf = app
        .queues_conf
        .managed(&q.server, &q.name)
        .await
        .map_err(conf_error)?;
    Ok((one, conf))
}

pub(super) async fn destroy(
    State(app): State<AppState>,
    Admin(user): Admin,
    Path(id): Path<String>,
) -> Result<StatusCode> {
    let q = find(&app, &user, &id)?;
    let one = app.queues_conf.exclusive().await.map_err(conf_error)?;
    app.queues_conf
        .destroy(&one, &q.server, &q.name)
        .await
        .map_err(|e| match e {
            // The vendor's file gives destroy only 204, 400 and 404.
            ConfError::NotManaged(_) => invalid(e.to_string()),
            e => conf_error(e),
        })?;
    app.portsip_events
        .publish("queue_destroy", &q.server, &queue_number(&q));
    Ok(StatusCode::NO_CONTENT)
}
