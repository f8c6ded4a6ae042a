-- The transactional outbox: a service that must publish an event together with a database
-- change writes the event here in the same transaction; the relay publishes it to Kafka
-- afterwards and marks it. Nothing is published for a change that rolled back, and nothing
-- committed is lost if the process dies before publishing.
CREATE TABLE outbox (
    outbox_id    bigserial PRIMARY KEY,
    topic        text NOT NULL,          -- without the deployment's topic prefix
    message_key  text,
    payload      bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (outbox_id) WHERE published_at IS NULL;

-- Wake the relay at once instead of waiting for its next poll.
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('tomstream_outbox', '');
    RETURN NULL;
END $$;
CREATE TRIGGER outbox_inserted AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
