//! `icon-notifier`: closes the loop. Consumes `checkout.finished`, delivers each notification of
//! the checkout through its channel (the callback, a push per device, the e-mail), and retries
//! failures through delay tiers until delivered, refused for good, or the give-up deadline,
//! when the notification is parked and marked `failed`.
//!
//! - [`settings`]: the environment it reads.
//! - [`schedule`]: retry delays, give-up, delay tiers.
//! - [`channels`]: one module per delivery channel: `callback`, `push` (FCM), `email` (SMTP).
//! - [`dispatch`]: the work-queue handler: attempts, retries, parking, crash safety, and the
//!   order of a checkout's events at each receiver.
//! - [`notice`]: what a notification announces (the checkout's end, or an order's change).
//! - [`metrics`]: attempts, retries, pushes and parked notifications, for `/metrics` on
//!   `ICON_PROBE_ADDR`.

pub mod channels;
pub mod dispatch;
pub mod metrics;
pub mod notice;
pub mod schedule;
pub mod settings;

use channels::{
    callback::CallbackChannel, email::EmailChannel, push::PushChannel, Channel, Channels,
};
use icon_broker::{run_consumer, ConsumerSettings, LazyPublisher, Topology};
use icon_contracts::topology::{CHECKOUT_FINISHED, PARKED};
use icon_outbox::RelaySettings;
use icon_store::PoolSettings;
pub use settings::NotifierSettings;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on ICON_PROBE_ADDR={addr}: {source}")]
    Probe {
        addr: String,
        source: std::io::Error,
    },
    #[error("cannot prepare the database: {0}")]
    Store(#[from] icon_store::StoreError),
    #[error("cannot build the HTTP client: {0}")]
    Tls(#[from] icon_http::TlsError),
    #[error("ICON_FCM_CREDENTIALS: {0}")]
    Push(String),
    #[error("{0}")]
    Email(String),
}

/// The notifier's queues: its work queue, one delay tier per distinct delay, and the parked
/// queue, of the configured type (`icon-notifier migrate-queues` converts them).
pub fn topology(settings: &NotifierSettings) -> Topology {
    let mut t = Topology::new()
        .queue_type(settings.queue_type)
        .work_queue(CHECKOUT_FINISHED)
        .plain_queue(PARKED);
    for delay in settings.schedule.tiers() {
        t = t.delay_tier(delay, CHECKOUT_FINISHED);
    }
    t
}

/// The push channel, or why it is off. Without credentials push is off (said once, here); with
/// a file that cannot be used the notifier refuses to start rather than fail every push.
fn push_channel(
    settings: &NotifierSettings,
    pool: &icon_store::Pool,
) -> Result<Result<Arc<dyn Channel>, String>, StartError> {
    let Some(path) = &settings.fcm.credentials else {
        tracing::warn!("push disabled: ICON_FCM_CREDENTIALS is not set; checkouts that ask for push will show it as not_configured");
        return Ok(Err(
            "push is not configured on this deployment (ICON_FCM_CREDENTIALS is not set)".into(),
        ));
    };
    let push = PushChannel::new(
        pool.clone(),
        path,
        &settings.fcm.endpoint,
        settings.callback_timeout,
    )
    .map_err(StartError::Push)?;
    tracing::info!(project_id = push.project_id(), endpoint = %settings.fcm.endpoint, "push enabled (FCM HTTP v1)");
    Ok(Ok(Arc::new(push)))
}

/// The e-mail channel, or why it is off.
fn email_channel(
    settings: &NotifierSettings,
) -> Result<Result<Arc<dyn Channel>, String>, StartError> {
    let Some(url) = &settings.smtp.url else {
        tracing::info!("e-mail disabled: ICON_SMTP_URL is not set");
        return Ok(Err(
            "e-mail is not configured on this deployment (ICON_SMTP_URL is not set)".into(),
        ));
    };
    let email = EmailChannel::new(url, &settings.smtp.from, settings.callback_timeout)
        .map_err(StartError::Email)?;
    tracing::info!("e-mail enabled (SMTP)");
    Ok(Ok(Arc::new(email)))
}

/// Runs the notifier until `shutdown`.
pub async fn run(
    settings: NotifierSettings,
    shutdown: CancellationToken,
) -> Result<(), StartError> {
    let connected = Arc::new(std::sync::OnceLock::new());
    let consuming = Arc::new(AtomicBool::new(false));
    metrics::register(&settings.schedule.tiers());
    icon_runtime::probe::start(
        settings.probe_addr.as_deref(),
        icon_store::pool::ready_check(connected.clone(), consuming.clone()),
        Some(metrics::sampler(connected.clone())),
        shutdown.clone(),
    )
    .await
    .map_err(|source| StartError::Probe {
        addr: settings.probe_addr.clone().unwrap_or_default(),
        source,
    })?;
    let Some(pool) =
        icon_store::connect(&PoolSettings::new(&settings.database_url), &shutdown).await?
    else {
        return Ok(());
    };
    let _ = connected.set(pool.clone());
    // Redeliveries and the stuck-notification sweep write due messages to the outbox.
    let relay = icon_outbox::spawn(
        pool.clone(),
        RelaySettings {
            amqp_url: settings.amqp_url.clone(),
            database_url: settings.database_url.clone(),
            name: "icon-notifier-outbox".into(),
        },
        settings.queue_type,
        shutdown.clone(),
    );
    let sweeper = tokio::spawn(icon_store::sweep::run(
        pool.clone(),
        icon_store::sweep::Stuck::Notifications,
        settings.stuck_after,
        shutdown.clone(),
    ));
    let callback = CallbackChannel::new(
        settings.callback_policy.clone(),
        settings.callback_timeout,
        settings.secrets_key.clone(),
        pool.clone(),
    )?;
    let channels = Channels::new(vec![Arc::new(callback)])
        .with("push", push_channel(&settings, &pool)?)
        .with("email", email_channel(&settings)?);
    let topology = topology(&settings);
    let dispatcher = Arc::new(dispatch::Dispatcher::new(
        pool,
        channels,
        settings.schedule.clone(),
        LazyPublisher::new(
            &settings.amqp_url,
            "icon-notifier-publisher",
            topology.clone(),
        ),
        settings.callback_timeout,
    ));
    run_consumer(
        ConsumerSettings {
            amqp_url: settings.amqp_url.clone(),
            name: "icon-notifier".into(),
            queue: CHECKOUT_FINISHED.into(),
            prefetch: settings.prefetch,
            grace: dispatcher.lease(),
        },
        topology,
        dispatcher.clone(),
        consuming.clone(),
        shutdown.clone(),
    )
    .await;
    shutdown.cancel();
    dispatcher.close().await;
    relay.stopped().await;
    let _ = sweeper.await;
    Ok(())
}
