//! `weir serve`: open the data directory, listen, run periodic work, and on SIGTERM/SIGINT stop
//! accepting, answer what was read, flush, checkpoint, write the clean-shutdown marker, exit 0.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::Broker;
use crate::config::BrokerConfig;

/// How long a stopping broker waits for the controller to fence it (Kafka bounds its
/// controlled shutdown likewise, then stops regardless).
const CONTROLLED_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn run(config: BrokerConfig, admin: crate::admin::AdminOptions) -> anyhow::Result<()> {
    let address = config.listener;
    let bind = || async move {
        TcpListener::bind(address)
            .await
            .map_err(|error| anyhow::anyhow!("cannot listen on {address}: {error}"))
    };
    let is_broker = config.is_broker;
    // A taken port fails the start at once rather than after recovery...
    if is_broker {
        drop(bind().await?);
    }
    let broker = Broker::start(config).await?;
    // Admin requests other brokers forward while this node is active controller. The handler
    // holds the broker weakly: the quorum it lives in belongs to the broker.
    let forwarded_to = Arc::downgrade(&broker);
    broker
        .quorum
        .set_forward_handler(Arc::new(move |frame: Vec<u8>| {
            let broker = forwarded_to.upgrade();
            Box::pin(async move {
                match broker {
                    Some(broker) => crate::protocol::forward::answer(&broker, frame).await,
                    None => Err("the broker is stopping".to_string()),
                }
            })
        }));
    // ...but clients can connect only once the broker answers: registered, unfenced, its
    // partitions open. A client connecting earlier would wait on a silent socket. A dedicated
    // controller has no Kafka listener.
    let listener = if is_broker { Some(bind().await?) } else { None };
    let (shutdown_sender, shutdown) = watch::channel(false);
    if is_broker {
        tracing::info!(
            listener = %broker.config.listener,
            log_dir = %broker.config.log_dir.display(),
            cluster_id = %broker.cluster_id(),
            topics = broker.topics().len(),
            "weir is serving"
        );
    } else {
        tracing::info!(
            controller_listener = ?broker.quorum.listener(),
            log_dir = %broker.config.log_dir.display(),
            "weir is serving as a dedicated controller"
        );
    }
    let maintenance = tokio::spawn(run_periodic_work(broker.clone(), shutdown.clone()));
    let admin = crate::admin::start(broker.clone(), admin, shutdown.clone()).await?;
    let server = listener
        .map(|listener| tokio::spawn(crate::protocol::serve(listener, broker.clone(), shutdown)));
    wait_for_signal().await?;
    // Controlled shutdown: fenced first, so the cluster stops counting on this broker now
    // rather than after its session timeout.
    if !is_broker {
        tracing::info!("dedicated controller stopping");
    } else if broker
        .quorum
        .controlled_shutdown(CONTROLLED_SHUTDOWN_TIMEOUT)
        .await
    {
        tracing::info!("controlled shutdown: the controller has fenced this broker");
    } else {
        tracing::warn!(
            timeout = ?CONTROLLED_SHUTDOWN_TIMEOUT,
            "controlled shutdown not acknowledged by a controller; stopping anyway"
        );
    }
    tracing::info!("shutting down: no new connections, answering requests already read");
    let _ = shutdown_sender.send(true);
    // Parked JoinGroup/SyncGroup requests would hold their connections until their rebalance
    // timeouts (minutes): answer them now so the connections drain.
    broker.groups.shutdown();
    if let Some(server) = server {
        server.await?;
    }
    admin.stopped().await;
    maintenance.await?;
    let flushing = broker.clone();
    tokio::task::spawn_blocking(move || flushing.shutdown_storage()).await??;
    broker.quorum.shutdown().await;
    tracing::info!("clean shutdown complete");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = terminate.recv() => {}
        _ = interrupt.recv() => {}
    }
    Ok(())
}

/// Retention, time-based roll and flush on `log.retention.check.interval.ms`; checkpoints of
/// recovery points and log start offsets on `log.flush.offset.checkpoint.interval.ms`.
async fn run_periodic_work(broker: Arc<Broker>, mut shutdown: watch::Receiver<bool>) {
    let mut maintenance = tokio::time::interval(Duration::from_millis(
        broker.config.retention_check_interval_ms.max(1),
    ));
    let mut checkpoint = tokio::time::interval(Duration::from_millis(
        broker.config.checkpoint_interval_ms.max(1),
    ));
    maintenance.tick().await;
    checkpoint.tick().await;
    loop {
        tokio::select! {
            _ = maintenance.tick() => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.run_log_maintenance()).await;
            }
            _ = checkpoint.tick() => {
                let broker = broker.clone();
                let _ = tokio::task::spawn_blocking(move || broker.checkpoint()).await;
            }
            _ = shutdown.changed() => return,
        }
    }
}
