//! `GET /metrics`: Prometheus' text format. The policy room's counters (calls and failures per
//! plugin version) and a few broker gauges read without blocking anything for long.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::broker::Broker;

/// Prometheus' text exposition format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn handle(State(broker): State<Arc<Broker>>) -> Response {
    let text = render(&broker);
    (StatusCode::OK, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// Everything `/metrics` shows.
pub fn render(broker: &Broker) -> String {
    let mut out = String::new();
    broker.policies.render_metrics(&mut out);
    render_controller(broker, &mut out);
    let topics = broker.topics();
    let partitions: u64 = topics.iter().map(|topic| u64::from(topic.partitions)).sum();
    let _ = writeln!(
        out,
        "# HELP weir_topics Topics on this broker.\n# TYPE weir_topics gauge\nweir_topics {}",
        topics.len()
    );
    let _ = writeln!(
        out,
        "# HELP weir_partitions Partitions on this broker.\n# TYPE weir_partitions gauge\nweir_partitions {partitions}"
    );
    let mut high_watermarks = String::new();
    let mut log_ends = String::new();
    let mut log_starts = String::new();
    for topic in &topics {
        for index in 0..topic.partitions {
            let Some(partition) = broker.partition(&topic.name, index as i32) else {
                continue;
            };
            // Topic names are [a-zA-Z0-9._-]: nothing to escape in a label.
            let labels = format!("topic=\"{}\",partition=\"{index}\"", topic.name);
            // A log out of service (poisoned) has no offsets to report; it is skipped.
            let Ok((end, start)) = partition
                .log()
                .map(|log| (log.log_end_offset(), log.log_start_offset()))
            else {
                continue;
            };
            let _ = writeln!(
                high_watermarks,
                "weir_partition_high_watermark{{{labels}}} {}",
                partition.high_watermark()
            );
            let _ = writeln!(log_ends, "weir_partition_log_end_offset{{{labels}}} {end}");
            let _ = writeln!(
                log_starts,
                "weir_partition_log_start_offset{{{labels}}} {start}"
            );
        }
    }
    let _ = write!(
        out,
        "# HELP weir_partition_high_watermark The offset below which records are committed.\n# TYPE weir_partition_high_watermark gauge\n{high_watermarks}\
         # HELP weir_partition_log_end_offset The offset the next appended record gets.\n# TYPE weir_partition_log_end_offset gauge\n{log_ends}\
         # HELP weir_partition_log_start_offset The first offset still in the log.\n# TYPE weir_partition_log_start_offset gauge\n{log_starts}"
    );
    out
}

/// The controller quorum as this node sees it (Kafka's `ActiveControllerCount`, the metadata
/// offsets, `FencedBrokerCount`) and, on the active controller, each broker's heartbeat age.
fn render_controller(broker: &Broker, out: &mut String) {
    let status = broker.quorum.status();
    let image = broker.quorum.view().image();
    let active = u8::from(status.leader == Some(status.node_id));
    let (fenced, registered) = image.brokers().fold((0, 0), |(fenced, all), broker| {
        (fenced + u32::from(broker.fenced), all + 1)
    });
    let _ = writeln!(
        out,
        "# HELP weir_controller_active 1 on the active controller, 0 elsewhere.\n# TYPE weir_controller_active gauge\nweir_controller_active {active}\n\
         # HELP weir_controller_id The active controller's node id as this node knows it (-1: none).\n# TYPE weir_controller_id gauge\nweir_controller_id {}\n\
         # HELP weir_metadata_applied_offset Offset after the last metadata entry this node applied.\n# TYPE weir_metadata_applied_offset gauge\nweir_metadata_applied_offset {}\n\
         # HELP weir_metadata_log_end_offset Offset after the last metadata entry this node holds.\n# TYPE weir_metadata_log_end_offset gauge\nweir_metadata_log_end_offset {}\n\
         # HELP weir_metadata_snapshot_offset Offset the last metadata snapshot covers up to (-1: none).\n# TYPE weir_metadata_snapshot_offset gauge\nweir_metadata_snapshot_offset {}\n\
         # HELP weir_registered_brokers Brokers registered in the metadata.\n# TYPE weir_registered_brokers gauge\nweir_registered_brokers {registered}\n\
         # HELP weir_fenced_brokers Registered brokers that are fenced.\n# TYPE weir_fenced_brokers gauge\nweir_fenced_brokers {fenced}",
        status.leader.map_or(-1, |id| id as i64),
        status.high_watermark,
        status.log_end_offset,
        status.snapshot_offset.map_or(-1, |offset| offset as i64),
    );
    let _ = writeln!(
        out,
        "# HELP weir_broker_heartbeat_age_seconds On the active controller: time since each unfenced broker's last heartbeat.\n# TYPE weir_broker_heartbeat_age_seconds gauge"
    );
    for (broker_id, age) in broker.quorum.heartbeat_ages() {
        let _ = writeln!(
            out,
            "weir_broker_heartbeat_age_seconds{{broker=\"{broker_id}\"}} {:.3}",
            age.as_secs_f64()
        );
    }
}
