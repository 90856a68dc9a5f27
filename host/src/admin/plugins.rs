//! The plugin endpoints: install, list, info, the current component's bytes, activate
//! (broker-wide or for one topic), rollback, remove. Changes go through the broker into the
//! metadata log (`broker/plugins.rs`), so every broker of the cluster runs them; the topic
//! binding is a topic config (`policy.<kind>`), changed as AlterConfigs changes it.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::{AdminError, blocking, json_response, now_ms, one_line};
use crate::broker::Broker;
use crate::broker::plugins::PluginError;
use crate::policy::{PluginInfo, Policies};

type Name = Result<Path<String>, PathRejection>;

#[derive(Debug, Deserialize)]
pub struct InstallQuery {
    name: Option<String>,
    version: Option<String>,
}

/// `POST /v1/plugins?name=N[&version=V]`, the component's bytes as the body: conformance runs,
/// then the version is stored (not yet active). 201 with the plugin's info.
pub async fn install(
    State(broker): State<Arc<Broker>>,
    query: Result<Query<InstallQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let Query(query) = query.map_err(|r| AdminError::rejected(r.status(), r.body_text()))?;
    let bytes = body.map_err(|r| AdminError::rejected(r.status(), r.body_text()))?;
    let Some(name) = query.name.filter(|name| !name.is_empty()) else {
        return Err(AdminError::bad_request(
            "the query parameter `name` is required: POST /v1/plugins?name=NAME[&version=VERSION]",
        ));
    };
    if bytes.is_empty() {
        return Err(AdminError::bad_request(
            "the request body is empty; send the component's bytes (a .wasm file)",
        ));
    }
    if let Ok(existing) = broker.policies.info(&name) {
        if existing.builtin {
            return Err(AdminError::conflict(format!(
                "`{name}` is the name of a built-in plugin; choose another name"
            )));
        }
        let sha256 = crate::policy::engine::sha256_hex(&bytes);
        if let Some(version) = &query.version
            && existing
                .versions
                .iter()
                .any(|v| &v.version == version && v.sha256 != sha256)
        {
            return Err(AdminError::conflict(format!(
                "`{name}` version {version} is already installed with different bytes"
            )));
        }
    }
    let installed = broker
        .install_plugin(&name, query.version.as_deref(), bytes.to_vec(), now_ms())
        .await
        .map_err(|error| match error {
            PluginError::Refused(error) => {
                let message = one_line(&error);
                if message.contains("is installed as a") {
                    AdminError::conflict(message)
                } else {
                    AdminError::bad_request(message)
                }
            }
            PluginError::Metadata(error) => error.into(),
        })?;
    Ok(json_response(StatusCode::CREATED, &installed))
}

#[derive(Debug, Serialize)]
struct PluginList {
    plugins: Vec<PluginInfo>,
}

/// `GET /v1/plugins`: every plugin, built-ins first.
pub async fn list(State(broker): State<Arc<Broker>>) -> Response {
    json_response(
        StatusCode::OK,
        &PluginList {
            plugins: broker.policies.list(),
        },
    )
}

/// `GET /v1/plugins/{name}`.
pub async fn info(State(broker): State<Arc<Broker>>, name: Name) -> Result<Response, AdminError> {
    let info = known(&broker.policies, &path(name)?)?;
    Ok(json_response(StatusCode::OK, &info))
}

/// The header naming the version whose bytes `GET /v1/plugins/{name}/component` returns.
pub const VERSION_HEADER: &str = "x-weir-plugin-version";

/// `GET /v1/plugins/{name}/component`: the current version's component (`application/wasm`),
/// its version in [`VERSION_HEADER`]; for clients that run the plugin themselves.
pub async fn component(
    State(broker): State<Arc<Broker>>,
    name: Name,
) -> Result<Response, AdminError> {
    let name = path(name)?;
    known(&broker.policies, &name)?;
    let policies = broker.policies.clone();
    let (version, bytes) = blocking(move || policies.component(&name))
        .await?
        .map_err(|error| AdminError::not_found(one_line(&error)))?;
    Response::builder()
        .status(StatusCode::OK)
        .header(axum::http::header::CONTENT_TYPE, "application/wasm")
        .header(VERSION_HEADER, version)
        .body(axum::body::Body::from(bytes))
        .map_err(|error| AdminError::internal(error.to_string()))
}

/// The body of `POST /v1/plugins/{name}/activate`; empty means `{}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActivateBody {
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    topic: Option<String>,
}

/// `POST /v1/plugins/{name}/activate`: without a topic, the version becomes current and the
/// plugin the broker-wide one of its kind; with a topic, the version becomes current and the
/// topic's `policy.<kind>` names the plugin.
pub async fn activate(
    State(broker): State<Arc<Broker>>,
    name: Name,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, AdminError> {
    let name = path(name)?;
    let body = body.map_err(|r| AdminError::rejected(r.status(), r.body_text()))?;
    let request: ActivateBody = if body.iter().all(u8::is_ascii_whitespace) {
        ActivateBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|error| {
            AdminError::bad_request(format!(
                "the body is not {{\"version\": \"...\", \"topic\": \"...\"}}: {error}"
            ))
        })?
    };
    let info = known(&broker.policies, &name)?;
    if let Some(version) = &request.version
        && !info.versions.iter().any(|v| &v.version == version)
    {
        return Err(AdminError::not_found(format!(
            "`{name}` has no version {version}"
        )));
    }
    if let Some(topic) = &request.topic
        && broker.topic(topic).is_none()
    {
        return Err(AdminError::kafka(
            ResponseError::UnknownTopicOrPartition.code(),
            format!("topic '{topic}' does not exist"),
        ));
    }
    let activated = broker
        .activate_plugin(&name, request.version.as_deref(), request.topic.as_deref())
        .await
        .map_err(|error| match error {
            PluginError::Refused(error) => AdminError::internal(one_line(&error)),
            PluginError::Metadata(error) => error.into(),
        })?;
    Ok(json_response(StatusCode::OK, &activated))
}

/// `POST /v1/plugins/{name}/rollback`: back to the version current before the last activation.
pub async fn rollback(
    State(broker): State<Arc<Broker>>,
    name: Name,
) -> Result<Response, AdminError> {
    let name = path(name)?;
    let info = known(&broker.policies, &name)?;
    if info.builtin {
        return Err(AdminError::conflict(format!(
            "`{name}` is built in and has one version; there is nothing to roll back to"
        )));
    }
    let rolled_back = broker
        .rollback_plugin(&name)
        .await
        .map_err(conflict_or_metadata)?;
    Ok(json_response(StatusCode::OK, &rolled_back))
}

#[derive(Debug, Serialize)]
struct Removed {
    removed: String,
}

/// `DELETE /v1/plugins/{name}`: refused (409) while the plugin is its kind's broker-wide plugin
/// or a topic's `policy.<kind>` names it.
pub async fn remove(State(broker): State<Arc<Broker>>, name: Name) -> Result<Response, AdminError> {
    let name = path(name)?;
    let info = known(&broker.policies, &name)?;
    if info.builtin {
        return Err(AdminError::conflict(format!(
            "`{name}` is built in and cannot be removed"
        )));
    }
    broker
        .remove_plugin(&name)
        .await
        .map_err(conflict_or_metadata)?;
    Ok(json_response(StatusCode::OK, &Removed { removed: name }))
}

/// A refusal is a conflict with the registry's state (409); a metadata failure keeps its
/// Kafka error.
fn conflict_or_metadata(error: PluginError) -> AdminError {
    match error {
        PluginError::Refused(error) => AdminError::conflict(one_line(&error)),
        PluginError::Metadata(error) => error.into(),
    }
}

fn path(name: Name) -> Result<String, AdminError> {
    name.map(|Path(name)| name)
        .map_err(|r| AdminError::rejected(r.status(), r.body_text()))
}

/// The info of an installed or built-in plugin, or 404.
fn known(policies: &Policies, name: &str) -> Result<PluginInfo, AdminError> {
    policies
        .info(name)
        .map_err(|_| AdminError::not_found(format!("no plugin named `{name}` is installed")))
}
