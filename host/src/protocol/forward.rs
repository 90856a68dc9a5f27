//! Admin requests that change metadata, sent to a broker that is not the active controller,
//! travel on to the controller (KIP-590's forwarding): the request frame goes over the
//! controller listener as the client sent it, the controller answers it with the same
//! handler a client connected to it would reach, and the response goes back to the client
//! under the client's own correlation id.

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, RequestHeader, RequestKind, ResponseHeader, ResponseKind,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::{FRAME_LENGTH_BYTES, Request, api, decode_request, encode_response};
use crate::broker::topics::TopicRecord;
use crate::broker::{ApiError, Broker};
use crate::controller::quorum::forward::FORWARD_TIMEOUT;

/// The CreateTopics version a broker uses for the topics Metadata auto-creates.
const AUTO_CREATE_VERSION: i16 = 7;

/// The APIs a broker forwards: the ones that change metadata, which only the active
/// controller may propose, and DescribeQuorum, which only it can answer (a dedicated controller
/// has no Kafka listener of its own).
pub fn is_forwarded(api_key: ApiKey) -> bool {
    matches!(
        api_key,
        ApiKey::CreateTopics
            | ApiKey::DeleteTopics
            | ApiKey::CreatePartitions
            | ApiKey::AlterConfigs
            | ApiKey::IncrementalAlterConfigs
            | ApiKey::DescribeQuorum
    )
}

/// The request frame (header and body, no length prefix) as the client sent it.
pub fn encode_request(request: &Request) -> anyhow::Result<Vec<u8>> {
    let version = request.header.request_api_version;
    let mut frame = BytesMut::with_capacity(256);
    request
        .header
        .encode(&mut frame, request.api_key.request_header_version(version))?;
    request.body.encode(&mut frame, version)?;
    Ok(frame.to_vec())
}

/// Sends `request` to the active controller and decodes its answer.
pub async fn to_controller(broker: &Broker, request: &Request) -> anyhow::Result<ResponseKind> {
    let (api_key, version) = (request.api_key, request.header.request_api_version);
    let frame = encode_request(request)?;
    let answer = broker.quorum.forward(frame).await?;
    let mut answer = Bytes::from(answer);
    ResponseHeader::decode(&mut answer, api_key.response_header_version(version))?;
    ResponseKind::decode(api_key, &mut answer, version)
}

/// The controller's side: answers a forwarded frame with the response frame (no length
/// prefix). Only forwardable APIs are served, and never forwarded again, so a request caught
/// by a controller change is answered NOT_CONTROLLER instead of travelling on.
pub async fn answer(broker: &Broker, frame: Vec<u8>) -> Result<Vec<u8>, String> {
    let request = match decode_request(Bytes::from(frame)) {
        Ok(Ok(request)) => request,
        Ok(Err(_)) => return Err("forwarded request has an unsupported version".into()),
        Err(error) => return Err(format!("forwarded request: {error}")),
    };
    if !is_forwarded(request.api_key) {
        return Err(format!(
            "{:?} is not forwarded to the controller",
            request.api_key
        ));
    }
    let (api_key, version) = (request.api_key, request.header.request_api_version);
    let correlation_id = request.header.correlation_id;
    // Admin handlers do not use the client's address; the forwarding broker's would be wrong
    // anyway.
    let peer = std::net::IpAddr::from([0, 0, 0, 0]);
    let Some(body) = api::dispatch(broker, request, peer).await else {
        return Err(format!("{api_key:?} gave no response"));
    };
    let response =
        encode_response(correlation_id, api_key, version, &body).map_err(|e| e.to_string())?;
    // The length prefix belongs to the client connection's framing, not to this answer.
    Ok(response[FRAME_LENGTH_BYTES..].to_vec())
}

/// Metadata's auto-creation on a broker that is not the active controller: a CreateTopics for
/// `name` with the broker defaults goes to the controller (as Kafka's AutoTopicCreationManager
/// sends one), and the topic is answered once this broker's image has it and its local
/// partitions are open. A creation still on its way is LEADER_NOT_AVAILABLE, as in Kafka;
/// both that and an unreachable controller's UNKNOWN_TOPIC_OR_PARTITION are retriable.
pub async fn auto_create(broker: &Broker, name: &str) -> Result<TopicRecord, ApiError> {
    let body = CreateTopicsRequest::default()
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(api::topic_name(name))
                .with_num_partitions(-1)
                .with_replication_factor(-1),
        ])
        .with_timeout_ms(FORWARD_TIMEOUT.as_millis() as i32);
    let request = Request {
        header: RequestHeader::default()
            .with_request_api_key(ApiKey::CreateTopics as i16)
            .with_request_api_version(AUTO_CREATE_VERSION)
            .with_client_id(Some(StrBytes::from_static_str("weir-auto-create"))),
        api_key: ApiKey::CreateTopics,
        body: RequestKind::CreateTopics(body),
    };
    let code = match to_controller(broker, &request).await {
        Ok(ResponseKind::CreateTopics(response)) => response
            .topics
            .first()
            .map_or(ResponseError::UnknownServerError.code(), |topic| {
                topic.error_code
            }),
        Ok(_) => ResponseError::UnknownServerError.code(),
        Err(error) => {
            return Err(ApiError::new(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "topic '{name}' does not exist and the controller cannot create it now: {error}"
                ),
            ));
        }
    };
    // Created now, or by another broker's request first: either way it is on its way here.
    if code != 0 && code != ResponseError::TopicAlreadyExists.code() {
        let error = ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError);
        return Err(ApiError::new(
            error,
            format!("the controller refused to create topic '{name}'"),
        ));
    }
    broker
        .wait_for_topic(name, FORWARD_TIMEOUT)
        .await
        .ok_or_else(|| {
            ApiError::new(
                ResponseError::LeaderNotAvailable,
                format!("topic '{name}' is being created"),
            )
        })
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::RequestKind;

    use super::*;

    #[test]
    fn a_forwarded_frame_decodes_as_the_request_the_client_sent() {
        let body = CreateTopicsRequest::default()
            .with_timeout_ms(1234)
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(api::topic_name("orders"))
                    .with_num_partitions(3)
                    .with_replication_factor(2),
            ]);
        let request = Request {
            header: RequestHeader::default()
                .with_request_api_key(ApiKey::CreateTopics as i16)
                .with_request_api_version(7)
                .with_correlation_id(42)
                .with_client_id(Some(StrBytes::from_static_str("admin"))),
            api_key: ApiKey::CreateTopics,
            body: RequestKind::CreateTopics(body.clone()),
        };
        let frame = encode_request(&request).expect("encodes");
        let decoded = decode_request(Bytes::from(frame))
            .expect("a valid frame")
            .expect("a supported version");
        assert_eq!(decoded.header, request.header);
        assert!(matches!(decoded.body, RequestKind::CreateTopics(got) if got == body));
    }

    #[test]
    fn only_what_the_controller_answers_is_forwarded() {
        for api in [
            ApiKey::CreateTopics,
            ApiKey::DeleteTopics,
            ApiKey::CreatePartitions,
            ApiKey::AlterConfigs,
            ApiKey::IncrementalAlterConfigs,
            ApiKey::DescribeQuorum,
        ] {
            assert!(is_forwarded(api), "{api:?}");
        }
        for api in [
            ApiKey::Produce,
            ApiKey::Fetch,
            ApiKey::Metadata,
            ApiKey::DescribeConfigs,
        ] {
            assert!(!is_forwarded(api), "{api:?}");
        }
    }
}
