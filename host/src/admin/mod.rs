//! The admin room: the HTTP admin API on `admin.listener` (default 127.0.0.1:9644) and the
//! plugin-directory watcher of `weir serve --plugin-dir`.
//!
//! - [`plugins`]: `POST/GET /v1/plugins`, `POST /v1/plugins/{name}/activate|rollback`,
//!   `DELETE /v1/plugins/{name}`: the `Policies` operations over HTTP.
//! - [`produce`]: `POST /v1/topics/{topic}/records`: JSON records placed by the topic's
//!   partitioner plugin and appended through the same produce path as Kafka's Produce.
//! - [`metrics`]: `GET /metrics` in Prometheus' text format.
//! - [`watch`]: installs and activates the `*.wasm` files that appear in a directory.
//!
//! Like the protocol room, handlers decode, call into `broker` and `policy`, and encode. Every
//! error is JSON, `{"error": "...", "error_code": <Kafka code, when there is one>}`, and no input
//! can panic a handler.

pub mod metrics;
pub mod plugins;
pub mod produce;
pub mod watch;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kafka_protocol::ResponseError;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch as signal;
use tokio::task::JoinHandle;

use crate::broker::{ApiError, Broker};

/// The config key of the admin API's address.
pub const ADMIN_LISTENER: &str = "admin.listener";
/// Largest component `POST /v1/plugins` accepts.
pub const PLUGIN_BODY_MAX_BYTES: usize = 16 << 20;
/// Largest JSON body `POST /v1/topics/{topic}/records` accepts.
pub const RECORDS_BODY_MAX_BYTES: usize = 8 << 20;
/// Largest body of the small JSON requests (activate).
pub const SMALL_BODY_MAX_BYTES: usize = 64 << 10;

/// What `weir serve` passes to the admin room beyond the broker config.
#[derive(Debug, Clone, Default)]
pub struct AdminOptions {
    /// `--plugin-dir`: watched for `*.wasm` files to install and activate.
    pub plugin_dir: Option<PathBuf>,
}

/// The admin room's running tasks; [`Admin::stopped`] waits for them after shutdown is signalled.
#[derive(Debug)]
pub struct Admin {
    tasks: Vec<JoinHandle<()>>,
    shutdown_timeout: Duration,
}

/// Binds `admin.listener` and starts the HTTP server and, with `--plugin-dir`, the watcher. Both
/// stop when `shutdown` turns true. An explicitly configured address that cannot be bound is an
/// error; the default address already in use (another broker on this host) only disables the
/// admin API, with a warning, so the Kafka listener still serves.
pub async fn start(
    broker: Arc<Broker>,
    options: AdminOptions,
    shutdown: signal::Receiver<bool>,
) -> anyhow::Result<Admin> {
    let address = broker.config.admin_listener;
    let mut tasks = Vec::new();
    match TcpListener::bind(address).await {
        Ok(listener) => {
            tracing::info!(admin_listener = %listener.local_addr().unwrap_or(address), "admin API listening");
            tasks.push(tokio::spawn(serve(
                listener,
                broker.clone(),
                shutdown.clone(),
            )));
        }
        Err(error) if broker.config.is_default(ADMIN_LISTENER) => {
            tracing::warn!(%address, %error, "admin API disabled: cannot listen on the default admin.listener; set admin.listener to serve it");
        }
        Err(error) => anyhow::bail!("cannot listen on admin.listener {address}: {error}"),
    }
    if let Some(dir) = options.plugin_dir {
        tasks.push(tokio::spawn(watch::run(broker.clone(), dir, shutdown)));
    }
    Ok(Admin {
        tasks,
        shutdown_timeout: Duration::from_millis(broker.config.shutdown_timeout_ms.max(1)),
    })
}

impl Admin {
    /// Waits (at most `shutdown.timeout.ms`) for in-flight admin requests and the watcher.
    pub async fn stopped(self) {
        let all = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(self.shutdown_timeout, all)
            .await
            .is_err()
        {
            tracing::warn!("admin API requests still running at shutdown were abandoned");
        }
    }
}

/// Serves the admin API on `listener` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    broker: Arc<Broker>,
    mut shutdown: signal::Receiver<bool>,
) {
    let stop = async move {
        let _ = shutdown.wait_for(|stop| *stop).await;
    };
    if let Err(error) = axum::serve(listener, router(broker))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(%error, "admin API stopped");
    }
}

/// Every route of the admin API.
pub fn router(broker: Arc<Broker>) -> Router {
    Router::new()
        .route(
            "/v1/plugins",
            post(plugins::install)
                .layer(DefaultBodyLimit::max(PLUGIN_BODY_MAX_BYTES))
                .get(plugins::list),
        )
        .route(
            "/v1/plugins/{name}",
            get(plugins::info).delete(plugins::remove),
        )
        .route(
            "/v1/plugins/{name}/activate",
            post(plugins::activate).layer(DefaultBodyLimit::max(SMALL_BODY_MAX_BYTES)),
        )
        .route("/v1/plugins/{name}/component", get(plugins::component))
        .route("/v1/plugins/{name}/rollback", post(plugins::rollback))
        .route(
            "/v1/topics/{topic}/records",
            post(produce::handle).layer(DefaultBodyLimit::max(RECORDS_BODY_MAX_BYTES)),
        )
        .route("/metrics", get(metrics::handle))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(broker)
}

async fn not_found() -> AdminError {
    AdminError::new(StatusCode::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> AdminError {
    AdminError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this endpoint does not take that method",
    )
}

/// A failed request: its HTTP status, a message, and the Kafka error code when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
    pub error_code: Option<i16>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_code: Option<i16>,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AdminError {
            status,
            message: message.into(),
            error_code: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::NOT_FOUND, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::CONFLICT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        AdminError::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    /// A Kafka error code with its HTTP status (see [`status_of_kafka_code`]).
    pub fn kafka(code: i16, message: impl Into<String>) -> Self {
        AdminError {
            status: status_of_kafka_code(code),
            message: message.into(),
            error_code: Some(code),
        }
    }

    /// An extractor's rejection (bad path, query or body; body over the limit: 413).
    pub fn rejected(status: StatusCode, text: String) -> Self {
        AdminError::new(status, text)
    }
}

impl From<ApiError> for AdminError {
    fn from(error: ApiError) -> Self {
        AdminError::kafka(error.code.code(), error.message)
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        json_response(
            self.status,
            &ErrorBody {
                error: &self.message,
                error_code: self.error_code,
            },
        )
    }
}

/// The HTTP status of a Kafka error: the client's mistake 400, a missing topic or partition 404,
/// an existing topic 409, a retriable condition 503, anything else 500.
pub fn status_of_kafka_code(code: i16) -> StatusCode {
    match ResponseError::try_from_code(code) {
        Some(ResponseError::UnknownTopicOrPartition | ResponseError::UnknownTopicId) => {
            StatusCode::NOT_FOUND
        }
        Some(ResponseError::TopicAlreadyExists) => StatusCode::CONFLICT,
        Some(
            ResponseError::InvalidTopicException
            | ResponseError::InvalidConfig
            | ResponseError::InvalidPartitions
            | ResponseError::InvalidRequest
            | ResponseError::InvalidRecord
            | ResponseError::InvalidTimestamp
            | ResponseError::CorruptMessage
            | ResponseError::MessageTooLarge
            | ResponseError::RecordListTooLarge
            | ResponseError::InvalidReplicationFactor,
        ) => StatusCode::BAD_REQUEST,
        Some(error) if error.is_retriable() => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// `value` as a JSON response with `status`.
pub fn json_response(status: StatusCode, value: &impl Serialize) -> Response {
    match serde_json::to_vec(value) {
        Ok(body) => (status, [(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(error) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"error\":\"cannot encode the response: {error}\"}}"),
        )
            .into_response(),
    }
}

/// Runs blocking policy work (compiling a component, writing the registry) off the runtime.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AdminError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|error| AdminError::internal(format!("the operation failed: {error}")))
}

/// An error chain on one line (wasmtime's messages can span several).
fn one_line(error: &anyhow::Error) -> String {
    format!("{error:#}")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_codes_map_to_http_statuses() {
        assert_eq!(status_of_kafka_code(3), StatusCode::NOT_FOUND);
        assert_eq!(status_of_kafka_code(17), StatusCode::BAD_REQUEST);
        assert_eq!(status_of_kafka_code(10), StatusCode::BAD_REQUEST);
        assert_eq!(status_of_kafka_code(36), StatusCode::CONFLICT);
        assert_eq!(status_of_kafka_code(7), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of_kafka_code(19), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(status_of_kafka_code(-1), StatusCode::INTERNAL_SERVER_ERROR);
    }
}
