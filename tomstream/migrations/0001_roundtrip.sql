-- The smoke round trip of `tomstream roundtrip`: one row per message, keyed on its natural id,
-- so a replayed or duplicated message never adds a row.
CREATE TABLE roundtrip_message (
    message_id   bigint PRIMARY KEY,
    payload      text NOT NULL,
    produced_at  timestamptz NOT NULL,
    topic        text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset bigint NOT NULL,
    stored_at    timestamptz NOT NULL DEFAULT now()
);
