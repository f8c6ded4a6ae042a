-- The TOM's own record of the alert cycle: what ingest stores from alert topics and what
-- broker_poll stores from classification topics. Every table is keyed on natural ids, so a
-- replayed or duplicated message never adds a row.

-- Objects: one row per diaObject; the values of its most recent alert win (alert_mjd).
CREATE TABLE diaobject (
    diaobject_id  bigint PRIMARY KEY,
    schema_name   text NOT NULL,              -- e.g. elasticc.v0_9_1.alert, lsst.v11_0.alert
    ra            double precision NOT NULL,
    decl          double precision NOT NULL,
    redshift      real,                       -- ELAsTiCC z_final
    redshift_err  real,
    properties    jsonb NOT NULL,             -- every other field of the diaObject record
    alert_mjd     double precision NOT NULL,  -- time of the alert these values came from
    first_seen    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Detections (an alert's diaSource and its prvDiaSources); inserted once. A Rubin
-- solar-system detection has no diaObject.
CREATE TABLE diasource (
    diasource_id  bigint PRIMARY KEY,
    diaobject_id  bigint,
    mjd           double precision NOT NULL,
    band          text NOT NULL,
    ra            double precision NOT NULL,
    decl          double precision NOT NULL,
    flux          real NOT NULL,              -- nJy
    flux_err      real NOT NULL,
    snr           real
);
CREATE INDEX diasource_object_mjd ON diasource (diaobject_id, mjd);
CREATE INDEX diasource_mjd ON diasource (mjd);

-- Forced photometry carried by alerts (prvDiaForcedSources); inserted once.
CREATE TABLE diaforcedsource (
    diaforcedsource_id bigint PRIMARY KEY,
    diaobject_id  bigint NOT NULL,
    mjd           double precision NOT NULL,
    band          text NOT NULL,
    flux          real NOT NULL,              -- nJy
    flux_err      real NOT NULL
);
CREATE INDEX diaforcedsource_object_mjd ON diaforcedsource (diaobject_id, mjd);

-- One row per alert per topic it arrived on (a DDF alert comes on two topics).
CREATE TABLE alert_receipt (
    alert_id        bigint NOT NULL,
    topic           text NOT NULL,
    kafka_partition integer NOT NULL,
    kafka_offset    bigint NOT NULL,
    kafka_timestamp timestamptz,
    ingested_at     timestamptz NOT NULL DEFAULT now(),
    diaobject_id    bigint,
    diasource_id    bigint NOT NULL,
    alert_mjd       double precision NOT NULL,
    PRIMARY KEY (alert_id, topic)
);
CREATE INDEX alert_receipt_object ON alert_receipt (diaobject_id);
CREATE INDEX alert_receipt_source ON alert_receipt (diasource_id);

-- A broker's classifier, unique by what identifies it.
CREATE TABLE classifier (
    classifier_id     serial PRIMARY KEY,
    broker_name       text NOT NULL,
    broker_version    text NOT NULL,
    classifier_name   text NOT NULL,
    classifier_params text NOT NULL,
    first_seen        timestamptz NOT NULL DEFAULT now(),
    UNIQUE (broker_name, broker_version, classifier_name, classifier_params)
);

-- One row per classification message. The same classifier saying the same thing about the
-- same alert (content_hash) is one row, however often it is delivered.
CREATE TABLE broker_message (
    broker_message_id     bigserial PRIMARY KEY,
    classifier_id         integer NOT NULL REFERENCES classifier,
    alert_id              bigint NOT NULL,
    diasource_id          bigint NOT NULL,
    content_hash          bytea NOT NULL,
    class_ids             smallint[] NOT NULL,
    probabilities         real[] NOT NULL,
    elasticc_publish_time timestamptz,
    broker_ingest_time    timestamptz,
    broker_publish_time   timestamptz,        -- only from the REST push path, if given
    kafka_timestamp       timestamptz,
    ingested_at           timestamptz NOT NULL DEFAULT now(),
    topic                 text,
    kafka_partition       integer,
    kafka_offset          bigint,
    UNIQUE (classifier_id, alert_id, content_hash)
);
CREATE INDEX broker_message_alert ON broker_message (alert_id);
CREATE INDEX broker_message_source ON broker_message (diasource_id);
