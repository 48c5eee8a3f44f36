-- W3C trace context across the outbox: the relay publishes `traceparent` as an AMQP header, so
-- one checkout is one trace from the gateway through the worker and the notifier. Nullable:
-- rows written outside any trace (sweeps, older binaries during a rolling upgrade) have none.
-- Adding a nullable column without a default rewrites nothing.
ALTER TABLE outbox ADD COLUMN traceparent text;

-- The submission with its trace context, still one statement for the gateway. A new overload
-- that wraps the 0005 function rather than a replacement of it: gateways of the previous
-- release keep calling the 19-argument form while a rolling upgrade runs. The extra cost is one
-- update by primary key of the row the 0005 function just inserted, in the same transaction.
CREATE FUNCTION icon_create_checkout(
    p_id uuid, p_cart bigint, p_owner text, p_resource_url text, p_push boolean,
    p_callback_id uuid, p_callback_url text, p_email_id uuid, p_email text,
    p_idem_key text, p_idem_request text, p_idem_status integer, p_idem_body text,
    p_message_id uuid, p_message_type text, p_exchange text, p_routing_key text, p_body bytea,
    p_publish_grace_secs double precision, p_traceparent text)
RETURNS TABLE (outcome text, checkout_id uuid, checkout_status text, response_status integer,
               response_body text, outbox_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    v record;
BEGIN
    SELECT * INTO v FROM icon_create_checkout(
        p_id, p_cart, p_owner, p_resource_url, p_push, p_callback_id, p_callback_url,
        p_email_id, p_email, p_idem_key, p_idem_request, p_idem_status, p_idem_body,
        p_message_id, p_message_type, p_exchange, p_routing_key, p_body, p_publish_grace_secs) f;
    IF v.outbox_id IS NOT NULL AND p_traceparent IS NOT NULL THEN
        UPDATE outbox o SET traceparent = p_traceparent WHERE o.id = v.outbox_id;
    END IF;
    RETURN QUERY SELECT v.outcome, v.checkout_id, v.checkout_status, v.response_status,
                        v.response_body, v.outbox_id;
END
$$;
