//! The `weir` client commands, in Kafka's vocabulary: `weir topics` (kafka-topics.sh),
//! `weir produce` (kafka-console-producer.sh) and `weir consume` (kafka-console-consumer.sh);
//! and `weir plugin`, over the broker's HTTP admin API.
//!
//! Layout:
//! - [`client`]: a small async Kafka client: one connection, ApiVersions negotiation, typed
//!   requests over the `kafka-protocol` crate, and the per-node connections of a cluster.
//! - [`topics`], [`produce`], [`consume`]: one file per command, each parsing its flags (clap),
//!   talking to the brokers, and printing what the Kafka tool prints.
//! - [`cluster`]: `weir cluster describe` (brokers, controller, voters).
//! - [`groups`]: `weir groups` (kafka-consumer-groups.sh --list/--describe) and the committed
//!   offsets `weir consume --group` reads and commits.
//! - [`plugin`]: install, list, activate, roll back and remove plugins over the admin API, and
//!   test a component locally.
//!
//! Every command returns `Result<(), CliError>`; [`run`] turns that into the process exit code.

pub mod client;
pub mod cluster;
pub mod consume;
pub mod groups;
pub mod plugin;
pub mod produce;
pub mod topics;

use std::future::Future;
use std::process::ExitCode;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::MetadataResponse;
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;

pub use client::{Client, ClientError, Cluster};

/// Why a client command failed. Each message names the problem for the person at the terminal.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The flags do not make sense together; exit code 2, like clap's own usage errors.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("topic '{0}' does not exist")]
    TopicNotFound(String),
    /// A broker answered with a Kafka error code.
    #[error("{context}: {}{}", error_name(*.code), .message.as_deref().map(|message| format!(": {message}")).unwrap_or_default())]
    Kafka {
        context: String,
        code: i16,
        message: Option<String>,
    },
    /// Several failures, each already a full sentence (per-partition produce errors).
    #[error("{}", .0.join("\n"))]
    Many(Vec<String>),
    #[error("cannot read standard input: {0}")]
    Stdin(std::io::Error),
    #[error("cannot write to standard output: {0}")]
    Stdout(std::io::Error),
    /// A `weir plugin` failure: the admin API's answer, a file, or a failed scenario.
    #[error("{0}")]
    Plugin(String),
}

impl CliError {
    /// A Kafka error from a response's error code and optional message.
    pub fn kafka(context: impl Into<String>, code: i16, message: Option<&str>) -> CliError {
        CliError::Kafka {
            context: context.into(),
            code,
            // Brokers often send the error's generic description; only a real message helps.
            message: message
                .filter(|message| !message.is_empty())
                .map(str::to_string),
        }
    }

    /// 2 for usage errors (as clap exits), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// Kafka's name for an error code, as Kafka's tools print it (`UNKNOWN_TOPIC_OR_PARTITION`).
/// The codec crate names its variants in CamelCase after the same Java enum, so the
/// SCREAMING_SNAKE form is a mechanical conversion.
pub fn error_name(code: i16) -> String {
    let Some(error) = ResponseError::try_from_code(code) else {
        return "NONE".to_string();
    };
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let camel = format!("{error:?}");
    let mut name = String::with_capacity(camel.len() + 8);
    for (index, character) in camel.chars().enumerate() {
        if character.is_ascii_uppercase() && index > 0 {
            name.push('_');
        }
        name.push(character.to_ascii_uppercase());
    }
    name
}

/// Runs one client command on a small runtime and maps its outcome to an exit code, printing
/// errors as `weir <command>: <message>` (one line per failure).
pub fn run<F>(command: &str, work: F) -> ExitCode
where
    F: Future<Output = Result<(), CliError>>,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("weir {command}: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(work);
    // Nothing the commands spawn needs finishing; do not wait on anything still blocked.
    runtime.shutdown_background();
    finish(command, outcome)
}

/// A command's outcome as an exit code, printing errors as `weir <command>: <message>`.
pub fn finish(command: &str, outcome: Result<(), CliError>) -> ExitCode {
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            for line in error.to_string().lines() {
                eprintln!("weir {command}: {line}");
            }
            ExitCode::from(error.exit_code())
        }
    }
}

/// The metadata of `topic` from a Metadata response, or why it is unusable.
pub(crate) fn find_topic<'a>(
    metadata: &'a MetadataResponse,
    topic: &str,
) -> Result<&'a MetadataResponseTopic, CliError> {
    let found = metadata
        .topics
        .iter()
        .find(|candidate| {
            candidate
                .name
                .as_ref()
                .is_some_and(|name| name.0.as_str() == topic)
        })
        .ok_or_else(|| CliError::TopicNotFound(topic.to_string()))?;
    match ResponseError::try_from_code(found.error_code) {
        None => Ok(found),
        Some(ResponseError::UnknownTopicOrPartition) => {
            Err(CliError::TopicNotFound(topic.to_string()))
        }
        Some(_) => Err(CliError::kafka(
            format!("cannot use topic '{topic}'"),
            found.error_code,
            None,
        )),
    }
}

/// Parses a `key=value` flag value (`--config`, `--property`).
pub(crate) fn parse_key_value(flag: &str, text: &str) -> Result<(String, String), CliError> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(CliError::Usage(format!(
            "{flag} expects key=value, got '{text}'"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(17), "INVALID_TOPIC_EXCEPTION");
        assert_eq!(error_name(36), "TOPIC_ALREADY_EXISTS");
        assert_eq!(error_name(19), "NOT_ENOUGH_REPLICAS");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(9999), "UNKNOWN_ERROR_CODE_9999");
    }

    #[test]
    fn kafka_errors_read_as_one_sentence() {
        let error = CliError::kafka("cannot create topic 't'", 36, Some("topic 't' exists"));
        assert_eq!(
            error.to_string(),
            "cannot create topic 't': TOPIC_ALREADY_EXISTS: topic 't' exists"
        );
        let bare = CliError::kafka("cannot delete topic 't'", 29, Some(""));
        assert_eq!(
            bare.to_string(),
            "cannot delete topic 't': TOPIC_AUTHORIZATION_FAILED"
        );
    }

    #[test]
    fn key_value_flags_need_an_equals_sign() {
        assert_eq!(
            parse_key_value("--config", "retention.ms=1=2").expect("valid"),
            ("retention.ms".to_string(), "1=2".to_string())
        );
        assert!(parse_key_value("--config", "retention.ms").is_err());
        assert!(parse_key_value("--config", "=1").is_err());
    }
}
