//! What one hop costs inside RabbitMQ on this machine, without ICON around it (issue 19 §1): a
//! persistent message published with confirms to a queue of the given type, consumed with
//! manual acks, as ICON's relays and consumers do. It prints the time from publish to confirm
//! and from publish to delivery, p50/p90/p99, so the `publish+queue` stages of
//! `icon-bench --stages` can be set against the broker's own part.
//!
//! ```sh
//! cargo run --release -p icon-broker --example hop -- --rate 20 --count 600 --queue-type quorum
//! ```
//!
//! `--rate 0` sends back to back (the next publish after the previous delivery). The probe
//! declares a queue of its own (`icon.hop-probe.<uuid>`) on `--url` (default the local
//! broker's `/` vhost) and deletes it at the end.

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ConnectionProperties};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    rate: f64,
    count: usize,
    queue_type: String,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        url: icon_broker::connect::DEFAULT_AMQP_URL.to_owned(),
        rate: 20.0,
        count: 600,
        queue_type: "quorum".to_owned(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--url" => a.url = value,
            "--rate" => a.rate = value.parse().map_err(|e| format!("--rate {value}: {e}"))?,
            "--count" => a.count = value.parse().map_err(|e| format!("--count {value}: {e}"))?,
            "--queue-type" if value == "quorum" || value == "classic" => a.queue_type = value,
            "--queue-type" => return Err(format!("--queue-type {value}: quorum or classic")),
            _ => {
                return Err(format!(
                    "unknown flag {flag} (--url, --rate, --count, --queue-type)"
                ))
            }
        }
    }
    if a.count == 0 {
        return Err("--count must be at least 1".into());
    }
    Ok(a)
}

fn percentiles(name: &str, mut v: Vec<Duration>) {
    v.sort();
    let at = |q: f64| v[((v.len() as f64 * q).ceil() as usize).clamp(1, v.len()) - 1];
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<22} {:>6} {:>9.3} {:>9.3} {:>9.3}",
        v.len(),
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99))
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hop: {e}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args).await {
        eprintln!("hop: {e}");
        std::process::exit(1);
    }
}

async fn run(args: &Args) -> Result<(), lapin::Error> {
    let props = ConnectionProperties::default().with_connection_name("icon-hop-probe".into());
    let conn = icon_broker::connect::open(&args.url, props).await?;
    let publish = conn.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let queue = format!("icon.hop-probe.{}", uuid::Uuid::new_v4());
    let mut queue_args = FieldTable::default();
    queue_args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString(args.queue_type.as_str().into()),
    );
    publish
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            queue_args,
        )
        .await?;
    let consume = conn.create_channel().await?;
    consume.basic_qos(32, BasicQosOptions::default()).await?;
    let mut consumer = consume
        .basic_consume(
            queue.as_str().into(),
            "icon-hop-probe".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    println!(
        "hop: {} messages to a {} queue, {}",
        args.count,
        args.queue_type,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "back to back".to_owned()
        }
    );
    let start = Instant::now();
    let gap = (args.rate > 0.0).then(|| Duration::from_secs_f64(1.0 / args.rate));
    let (mut confirmed, mut delivered) = (Vec::new(), Vec::new());
    for n in 0..args.count {
        if let Some(gap) = gap {
            tokio::time::sleep_until((start + gap * n as u32).into()).await;
        }
        let sent = Instant::now();
        let confirm = publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                n.to_string().as_bytes(),
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        // The confirm and the delivery race; each is timed from the publish.
        let ((confirmed_at, confirm), (at, delivery)) = tokio::join!(
            async {
                let c = confirm.await;
                (Instant::now(), c)
            },
            async {
                let d = consumer.next().await;
                (Instant::now(), d)
            }
        );
        confirm?;
        confirmed.push(confirmed_at - sent);
        let delivery = delivery.ok_or(lapin::Error::from(std::io::Error::other(
            "the consumer stopped",
        )))??;
        delivered.push(at - sent);
        delivery.ack(BasicAckOptions::default()).await?;
    }
    println!(
        "{:<22} {:>6} {:>9} {:>9} {:>9}",
        "ms", "count", "p50", "p90", "p99"
    );
    percentiles("publish -> confirm", confirmed);
    percentiles("publish -> delivery", delivered);
    publish
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    conn.close(200, "done".into()).await?;
    Ok(())
}
