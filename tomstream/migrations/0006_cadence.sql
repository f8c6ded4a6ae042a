-- Cadences (tomstream/services/cadence): observation templates, observation groups and records, dynamic
-- cadences and the history of their decisions. Exactly one request per step rests on two
-- constraints of observation_record: a step number is used once per group, and an observation
-- is followed up at most once (follows is unique), so a decision repeated after a crash or a
-- duplicated event cannot insert a second request, and the trigger is only enqueued (outbox) in
-- the transaction that inserted its record.

CREATE TABLE observation_template (
    template_id bigserial PRIMARY KEY,
    name        text NOT NULL,
    facility    text NOT NULL,
    parameters  jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE observation_group (
    group_id   bigserial PRIMARY KEY,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE dynamic_cadence (
    cadence_id       bigserial PRIMARY KEY,
    group_id         bigint NOT NULL UNIQUE REFERENCES observation_group (group_id),
    template_id      bigint REFERENCES observation_template (template_id) ON DELETE SET NULL,
    strategy         text NOT NULL,    -- dotted path of the strategy plugin
    facility         text NOT NULL,
    observation_type text NOT NULL,
    target           jsonb NOT NULL,   -- {objectid, name, ra, dec}
    parameters       jsonb NOT NULL,   -- the facility parameters every request starts from
    frequency_hours  double precision NOT NULL CHECK (frequency_hours > 0),
    anchor           text NOT NULL DEFAULT 'requested' CHECK (anchor IN ('requested', 'actual')),
    options          jsonb NOT NULL DEFAULT '{}',  -- strategy-specific parameters
    stop_conditions  jsonb NOT NULL DEFAULT '{}',  -- max_observations, max_consecutive_failures, end_time
    state            text NOT NULL DEFAULT 'active'
                     CHECK (state IN ('active', 'paused', 'stopped', 'finished')),
    active           boolean GENERATED ALWAYS AS (state = 'active') STORED,
    state_reason     text,
    last_decision    text,
    last_decision_at timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX dynamic_cadence_active ON dynamic_cadence (cadence_id) WHERE active;

CREATE TABLE observation_record (
    request_id       text PRIMARY KEY,  -- deterministic: cad<cadence id>-<step>
    group_id         bigint NOT NULL REFERENCES observation_group (group_id),
    cadence_id       bigint NOT NULL REFERENCES dynamic_cadence (cadence_id),
    step             integer NOT NULL CHECK (step >= 1),
    follows          text UNIQUE REFERENCES observation_record (request_id),
    reason           text NOT NULL
                     CHECK (reason IN ('first', 'advance', 'retry-now', 'retry-shifted')),
    facility         text NOT NULL,
    observation_type text NOT NULL,
    parameters       jsonb NOT NULL,
    requested_start  timestamptz NOT NULL,
    requested_end    timestamptz NOT NULL,
    observation_id   text,
    status           text,              -- the latest status the facility's map knows
    reported_status  text,              -- the latest word reported, known or not
    status_time      timestamptz,       -- event time of the latest status applied
    scheduled_start  timestamptz,
    scheduled_end    timestamptz,
    user_cancel      boolean NOT NULL DEFAULT false,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    UNIQUE (group_id, step)
);
CREATE INDEX observation_record_cadence ON observation_record (cadence_id, step);

CREATE TABLE cadence_decision (
    decision_id bigserial PRIMARY KEY,
    cadence_id  bigint NOT NULL REFERENCES dynamic_cadence (cadence_id),
    decided_at  timestamptz NOT NULL DEFAULT now(),
    source      text NOT NULL,          -- event, sweep, create, stop, resume
    request_id  text,                   -- the observation whose status was seen
    event       jsonb,                  -- the status event, as received
    outcome     text NOT NULL,          -- emitted, waiting, finished, stopped, paused, ...
    detail      text NOT NULL,          -- the strategy's or the stop condition's words
    emitted     text[] NOT NULL DEFAULT '{}'  -- request ids of the triggers enqueued
);
CREATE INDEX cadence_decision_cadence ON cadence_decision (cadence_id, decision_id);
