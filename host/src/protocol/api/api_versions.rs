//! ApiVersions: the APIs and version ranges this broker serves.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::ApiVersionsResponse;
use kafka_protocol::messages::api_versions_response::ApiVersion;

use super::{SUPPORTED, supported_versions};

pub fn handle() -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(api_keys())
}

/// The KIP-511 answer to an ApiVersions request at a version we do not know.
pub fn unsupported_version() -> kafka_protocol::messages::ResponseKind {
    kafka_protocol::messages::ResponseKind::ApiVersions(
        ApiVersionsResponse::default()
            .with_error_code(ResponseError::UnsupportedVersion.code())
            .with_api_keys(api_keys()),
    )
}

fn api_keys() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .filter_map(|(api_key, _, _)| {
            let (min, max) = supported_versions(*api_key)?;
            Some(
                ApiVersion::default()
                    .with_api_key(*api_key as i16)
                    .with_min_version(min)
                    .with_max_version(max),
            )
        })
        .collect()
}
