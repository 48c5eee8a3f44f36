-- The notifications given up and parked (state `failed`) and waiting for a redeliver, one row
-- each, for the `icon_notifications_parked` gauge (docs/metrics.md). A push dropped because FCM
-- no longer knows its device is `failed` too, but not parked (nothing to redo): not listed.
--
-- Why a table and not an index on `notifications (state)`: an index whose key or predicate
-- holds `state` makes every update that changes `state` (each recorded attempt: pending to
-- delivered, say) a non-HOT update that writes every index of the row, on the checkout path.
-- This table is written only when a notification is given up (by the statement that records
-- the attempt) and when it is redelivered (by the redeliver statement), so the delivered path
-- gains one empty insert and the scrape counts a table that holds the parked few.
CREATE TABLE parked_notifications (
    notification_id  uuid PRIMARY KEY REFERENCES notifications (id) ON DELETE CASCADE,
    channel          text NOT NULL,
    parked_at        timestamptz NOT NULL DEFAULT now()
);

-- Those given up before this table existed (one scan, at migration time only); dropped pushes
-- are told apart by the error the notifier recorded for them.
INSERT INTO parked_notifications (notification_id, channel, parked_at)
SELECT id, channel, updated_at FROM notifications
WHERE state = 'failed'
  AND NOT (channel = 'push' AND (last_error LIKE '%; the device was removed from the registry'
                                 OR last_error LIKE 'the device was unregistered%'));
