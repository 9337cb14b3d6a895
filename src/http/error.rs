//! The one error type of the HTTP API and its JSON body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

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
            ApiError::Command(e) => {
                let status = match e.code {
                    Code::InvalidArgument => StatusCode::BAD_REQUEST,
                    Code::Forbidden => StatusCode::FORBIDDEN,
                    Code::NoSuchServer
                    | Code::NoSuchQueue
                    | Code::NotMember
                    | Code::NoSuchCaller => StatusCode::NOT_FOUND,
                    Code::NotDynamic => StatusCode::CONFLICT,
                    Code::NotConnected | Code::Busy => StatusCode::SERVICE_UNAVAILABLE,
                    Code::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    Code::Refused => StatusCode::BAD_GATEWAY,
                };
                (status, e.code.as_str())
            }
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
