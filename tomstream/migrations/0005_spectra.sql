-- The spectrum cycle of the HTTP API (tomstream/services/spectra_api): who may call it, which spectra are
-- wanted, who plans to take them, and what was found. Rows that name an object reference
-- diaobject, so a request about an object tomstream never saw is refused by the database too.

-- API users. A password is stored only as a salted, memory-hard scrypt hash; a user without one
-- can only use bearer tokens. Roles: 'broker' may push classifications.
CREATE TABLE api_user (
    user_id        serial PRIMARY KEY,
    username       text NOT NULL UNIQUE,
    password_hash  text,
    roles          text[] NOT NULL DEFAULT '{}',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Browser-style sessions (the DESC tom_client.py login flow). The cookie value is a random secret
-- of which only the SHA-256 is stored; each session has its own CSRF token.
CREATE TABLE api_session (
    session_hash   bytea PRIMARY KEY,
    user_id        integer NOT NULL REFERENCES api_user ON DELETE CASCADE,
    csrf_token     text NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now(),
    expires_at     timestamptz NOT NULL
);
CREATE INDEX api_session_expires ON api_session (expires_at);

-- Bearer tokens for services; only the SHA-256 of the token is stored.
CREATE TABLE api_token (
    token_hash     bytea PRIMARY KEY,
    user_id        integer NOT NULL REFERENCES api_user ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX api_token_user ON api_token (user_id);

-- elasticc2/askforspectrum: one row per object and requester; asking again updates the
-- priority and the time.
CREATE TABLE wanted_spectrum (
    diaobject_id   bigint NOT NULL REFERENCES diaobject,
    requester      text NOT NULL,
    priority       smallint NOT NULL CHECK (priority BETWEEN 1 AND 5),
    wanted_at      timestamptz NOT NULL DEFAULT now(),
    user_id        integer REFERENCES api_user ON DELETE SET NULL,
    PRIMARY KEY (diaobject_id, requester)
);
-- spectrawanted reads the requests made since a time.
CREATE INDEX wanted_spectrum_time ON wanted_spectrum (wanted_at);

-- elasticc2/planspectrum: one plan per object and facility; planning again replaces it.
-- The primary key also serves "is this object claimed since T" (object first).
CREATE TABLE planned_spectrum (
    diaobject_id   bigint NOT NULL REFERENCES diaobject,
    facility       text NOT NULL,
    plantime       timestamptz,
    comment        text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    user_id        integer REFERENCES api_user ON DELETE SET NULL,
    PRIMARY KEY (diaobject_id, facility)
);

-- elasticc2/reportspectruminfo: every report is kept (a facility may observe an object twice).
CREATE TABLE spectrum_info (
    specinfo_id    bigserial PRIMARY KEY,
    diaobject_id   bigint NOT NULL REFERENCES diaobject,
    facility       text NOT NULL,
    mjd            double precision NOT NULL,
    z              double precision,
    classid        smallint,
    inserted_at    timestamptz NOT NULL DEFAULT now(),
    user_id        integer REFERENCES api_user ON DELETE SET NULL
);
-- "no spectrum of this object since MJD" (spectrawanted) and the best known redshift and class
-- of an object (ltcv, gethottransients) read one object's reports.
CREATE INDEX spectrum_info_object_mjd ON spectrum_info (diaobject_id, mjd);
-- getknownspectruminfo lists reports in MJD order.
CREATE INDEX spectrum_info_mjd ON spectrum_info (mjd);

-- gethottransients and spectrawanted look up the objects detected in a time window: with the
-- object id in the index that is an index-only scan instead of one heap visit per detection.
CREATE INDEX diasource_mjd_object ON diasource (mjd) INCLUDE (diaobject_id);
