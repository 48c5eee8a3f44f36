//! The relay's side of RabbitMQ: one connection and confirm channel, and what to do with a row
//! the broker could not route.
//!
//! Unroutable is not a lost connection. A message comes back unroutable when no queue is bound
//! for its exchange and routing key: typically a delay tier an operator deleted while a row
//! still needed it. The relay then declares its topology once more (its work queues, plus every
//! ICON delay tier the returned rows name, which it can rebuild from the name alone) and tries
//! those rows again. A row still unroutable is set aside by the caller
//! (`icon_store::outbox::set_aside_unroutable`): kept, counted, logged once, retried with
//! backoff. The rows that were routed are confirmed as usual and never published again.

use crate::outgoing;
use icon_broker::{lapin, OutgoingMessage, PublishError, Publisher, QueueType, Topology};
use icon_store::outbox::OutboxRow;
use std::time::Instant;

pub(crate) struct Link {
    pub(crate) conn: lapin::Connection,
    pub(crate) publisher: Publisher,
    /// What every (re)connect declares.
    topology: Topology,
    queue_type: QueueType,
    /// When the topology was last declared again because of an unroutable row.
    redeclared: Option<Instant>,
}

impl Link {
    /// Declares `topology` on `conn` and opens the confirm channel.
    pub(crate) async fn open(
        conn: lapin::Connection,
        topology: &Topology,
        queue_type: QueueType,
    ) -> Result<Self, (lapin::Connection, lapin::Error)> {
        let opened = async {
            topology.declare(&conn).await?;
            Publisher::open(&conn).await
        }
        .await;
        match opened {
            Ok(publisher) => Ok(Self {
                conn,
                publisher,
                topology: topology.clone(),
                queue_type,
                redeclared: None,
            }),
            Err(e) => Err((conn, e)),
        }
    }

    /// Publishes `rows` with confirms and returns the ids of those no queue took, even after
    /// declaring the topology again; every other row was confirmed. Fails as a whole only when
    /// the channel or the broker did (see [`Publisher::publish_each`]).
    pub(crate) async fn publish(&mut self, rows: &[OutboxRow]) -> Result<Vec<i64>, PublishError> {
        let messages: Vec<OutgoingMessage> = rows.iter().map(outgoing).collect();
        let routed = self.publisher.publish_each(&messages).await?;
        let mut returned: Vec<&OutboxRow> = rows
            .iter()
            .zip(routed)
            .filter_map(|(row, routed)| (!routed).then_some(row))
            .collect();
        if returned.is_empty() || !self.redeclare(&returned).await {
            return Ok(returned.iter().map(|r| r.id).collect());
        }
        let again: Vec<OutgoingMessage> = returned.iter().map(|r| outgoing(r)).collect();
        let routed = self.publisher.publish_each(&again).await?;
        let mut routed = routed.into_iter();
        returned.retain(|_| routed.next() == Some(false));
        Ok(returned.iter().map(|r| r.id).collect())
    }

    /// Declares the topology again, with the delay tiers `returned` name, at most once every
    /// [`icon_broker::REDECLARE_AT_MOST_EVERY`]. True if it did (worth trying those rows again).
    async fn redeclare(&mut self, returned: &[&OutboxRow]) -> bool {
        if self
            .redeclared
            .is_some_and(|at| at.elapsed() < icon_broker::REDECLARE_AT_MOST_EVERY)
        {
            return false;
        }
        self.redeclared = Some(Instant::now());
        let mut topology = self.topology.clone().queue_type(self.queue_type);
        let mut tiers = std::collections::HashSet::new();
        for row in returned {
            tracing::debug!(
                exchange = %row.exchange,
                routing_key = %row.routing_key,
                message_id = %row.message_id,
                "outbox message returned unroutable; declaring the topology again"
            );
            if let Some((queue, delay)) =
                icon_contracts::topology::parse_delay_queue(&row.routing_key)
                    .filter(|_| tiers.insert(row.routing_key.as_str()))
            {
                topology = topology.delay_tier(delay, queue);
            }
        }
        match topology.declare(&self.conn).await {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(error = %e, "outbox relay could not declare its topology again");
                false
            }
        }
    }
}
