//! Request bodies: read whole before any handler sees them, at most `max_body_bytes` (`413`
//! beyond), within `request_timeout` of the head (`408` after), and never with a NUL in them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::response::IntoResponse;
use axum::Router;
use bytes::Bytes;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;

/// `router`, with every request body read whole, at most `max` bytes, before any handler sees
/// it: `413` beyond (whatever the dialect, declared or chunked), `408` when it did not arrive
/// within the request timeout. Request bodies here are small JSON and forms; reading them up
/// front gives one answer for all routes instead of one per dialect's extractor.
pub fn with_body_limit(router: Router, max: usize) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: axum::extract::Request, next: axum::middleware::Next| async move {
            let (parts, body) = req.into_parts();
            let declared = parts
                .headers
                .get(axum::http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > max as u64) {
                return too_large(max);
            }
            match axum::body::to_bytes(body, max).await {
                Ok(bytes) if carries_nul(&bytes) => answer(
                    axum::http::StatusCode::BAD_REQUEST,
                    "bad_request",
                    "a NUL character is not accepted in a request body".into(),
                    false,
                ),
                Ok(bytes) => {
                    next.run(axum::extract::Request::from_parts(parts, Body::from(bytes)))
                        .await
                }
                Err(e) if is_length_limit(&e) => too_large(max),
                Err(_) => answer(
                    axum::http::StatusCode::REQUEST_TIMEOUT,
                    "request_timeout",
                    "the request body did not arrive in time".into(),
                    true,
                ),
            }
        },
    ))
}

/// Whether a body holds a NUL, raw, JSON-escaped (`\u0000`) or form-encoded (`%00`): Asterisk
/// reads C strings, so a NUL would cut a queue name, member name or reason short there, and
/// what queuebridge confirmed would not be what Asterisk stored.
fn carries_nul(body: &[u8]) -> bool {
    body.contains(&0)
        || memchr::memmem::find(body, b"\\u0000").is_some()
        || memchr::memmem::find(body, b"%00").is_some()
}

fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// `413`, and the connection closes: the rest of the body is not read, so the connection
/// cannot carry another request (and the client is told so, not left to find out).
fn too_large(max: usize) -> axum::response::Response {
    answer(
        axum::http::StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!("request bodies are at most {max} bytes"),
        true,
    )
}

/// `{"error", "message"}` with `status`; with `close`, the connection closes after it (the
/// body was not read whole, so it cannot carry another request).
fn answer(
    status: axum::http::StatusCode,
    error: &str,
    message: String,
    close: bool,
) -> axum::response::Response {
    let body = axum::Json(serde_json::json!({ "error": error, "message": message }));
    if close {
        (status, [(axum::http::header::CONNECTION, "close")], body).into_response()
    } else {
        (status, body).into_response()
    }
}

/// A request body that must arrive whole within a deadline.
pub(super) struct Deadline {
    body: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    pub(super) fn new(body: Incoming, within: Duration) -> Self {
        Self {
            body,
            deadline: Box::pin(tokio::time::sleep(within)),
        }
    }
}

/// The body did not arrive within the request timeout.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct TooSlow;

impl HttpBody for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::BoxError>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(TooSlow.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nul_is_found_however_it_is_written() {
        assert!(carries_nul(b"{\"reason\":\"Lu\\u0000nch\"}"));
        assert!(carries_nul(b"username=a%00b"));
        assert!(carries_nul(b"a\0b"));
        assert!(!carries_nul(b"{\"reason\":\"Lunch\\u00e9\"}"));
    }
}
