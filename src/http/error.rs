//! The native API's error type and its JSON body, and what every API shares about failure:
//! the HTTP status of a command's outcome, and server faults logged with the request's id
//! while the client learns only that id.

use std::fmt::Display;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tracing::{error, info_span, warn, Instrument};

use crate::command::{Code, CommandError};

/// Every way a request can fail. Client mistakes get 4xx with a reason; nothing internal leaks.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Ambiguous(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unavailable(String),
    /// A command's failure, with its stable code as the `error` field.
    #[error("{0}")]
    Command(#[from] CommandError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::Ambiguous(_) => (StatusCode::CONFLICT, "ambiguous"),
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::Command(e) => (status_of(e.code), e.code.as_str()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = Json(json!({ "error": code, "message": self.to_string() }));
        let mut response = (status, body).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

/// The HTTP status of a command's failure. A dialect departs from it only where its vendor's
/// document fixes another status (each says so where it does).
pub fn status_of(code: Code) -> StatusCode {
    match code {
        Code::InvalidArgument => StatusCode::BAD_REQUEST,
        Code::Forbidden => StatusCode::FORBIDDEN,
        Code::NoSuchServer | Code::NoSuchQueue | Code::NotMember | Code::NoSuchCaller => {
            StatusCode::NOT_FOUND
        }
        Code::NotDynamic => StatusCode::CONFLICT,
        Code::NotConnected | Code::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
        Code::Refused => StatusCode::BAD_GATEWAY,
    }
}

tokio::task_local! {
    /// The id of the request being answered.
    static REQUEST_ID: u64;
}

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// Middleware: gives every request an id (the `X-Request-Id` of its response, and a field of
/// every log line written while it is answered) and logs each answer that is a server fault.
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    // Both are cheap to keep: a method is a small enum, a URI shares the request's bytes.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let mut response = REQUEST_ID
        .scope(id, next.run(req).instrument(info_span!("request", id)))
        .await;
    let status = response.status();
    if status.is_server_error() {
        warn!(request_id = id, %method, path = %uri.path().escape_debug(), status = status.as_u16(), "request answered with a server error");
    }
    response
        .headers_mut()
        .insert("x-request-id", HeaderValue::from(id));
    response
}

/// A server fault while answering: logs `what` and `err` with the request's id, and returns
/// what the client is told instead — that it was internal, and the id to quote.
pub fn internal(what: &str, err: impl Display) -> String {
    let id = REQUEST_ID.try_with(|id| *id).unwrap_or(0);
    error!(request_id = id, %err, "{what}");
    format!("internal error (request {id}); the server's log has the details")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use axum::Router;
    use tower::ServiceExt;

    /// A fault's detail stays in the log; the client gets the request id, in the body and the
    /// header alike.
    #[tokio::test]
    async fn a_server_fault_tells_the_client_only_its_request_id() {
        let app = Router::new()
            .route(
                "/",
                get(|| async {
                    let message = internal("reading", "disk I/O error at /var/lib/secret.db");
                    (StatusCode::INTERNAL_SERVER_ERROR, message)
                }),
            )
            .layer(axum::middleware::from_fn(request_id));
        let response = app
            .oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let body = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("request {id}")), "{body}");
        assert!(!body.contains("secret"), "{body}");
    }
}
