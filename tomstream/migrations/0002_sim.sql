-- The simulated survey (`tomstream sim load | synth | send`): a stand-in for Rubin's
-- PPDB that the simulation streams alerts from, as the DESC TOM's PPDB* tables did. It lives in
-- its own schema so that the TOM's tables (diaobject, diasource, …) never mix with the truth.
-- Every table is keyed on its natural (ELAsTiCC2) id, so loading a file twice adds nothing.
--
-- No foreign keys: the loaders write an object and all its photometry in one transaction, and
-- bulk loads of tens of millions of rows would pay a key lookup per row for nothing.
CREATE SCHEMA sim;

-- One row per diaObject, with the fields of the ELAsTiCC2 diaObject record (hostgal_mag_y is
-- the record's hostgal_mag_Y). SNANA's "no value" sentinels (-9, -99, 999, -9999) are kept as
-- they are, as the DESC TOM did, so the alerts carry them too; a column missing from a FITS
-- file (e.g. the photo-z quantiles of galactic models) is NULL, and null in the alerts.
CREATE TABLE sim.diaobject (
    diaobject_id   bigint PRIMARY KEY,         -- SNANA SNID
    isddf          boolean NOT NULL,           -- deep-drilling field: streamed to the DDF topics
    simversion     text NOT NULL,
    ra             double precision NOT NULL,
    decl           double precision NOT NULL,
    mwebv          real,
    mwebv_err      real,
    z_final        real,
    z_final_err    real,
    z_helio        real,                       -- REDSHIFT_HELIO (not in the alert record)
    z_helio_err    real,
    hostgal_ellipticity    real,
    hostgal_sqradius       real,
    hostgal_zspec          real,
    hostgal_zspec_err      real,
    hostgal_zphot          real,
    hostgal_zphot_err      real,
    hostgal_zphot_q000     real,
    hostgal_zphot_q010     real,
    hostgal_zphot_q020     real,
    hostgal_zphot_q030     real,
    hostgal_zphot_q040     real,
    hostgal_zphot_q050     real,
    hostgal_zphot_q060     real,
    hostgal_zphot_q070     real,
    hostgal_zphot_q080     real,
    hostgal_zphot_q090     real,
    hostgal_zphot_q100     real,
    hostgal_mag_u          real,
    hostgal_mag_g          real,
    hostgal_mag_r          real,
    hostgal_mag_i          real,
    hostgal_mag_z          real,
    hostgal_mag_y          real,
    hostgal_ra             real,
    hostgal_dec            real,
    hostgal_snsep          real,
    hostgal_magerr_u       real,
    hostgal_magerr_g       real,
    hostgal_magerr_r       real,
    hostgal_magerr_i       real,
    hostgal_magerr_z       real,
    hostgal_magerr_y       real,
    hostgal2_ellipticity    real,
    hostgal2_sqradius       real,
    hostgal2_zspec          real,
    hostgal2_zspec_err      real,
    hostgal2_zphot          real,
    hostgal2_zphot_err      real,
    hostgal2_zphot_q000     real,
    hostgal2_zphot_q010     real,
    hostgal2_zphot_q020     real,
    hostgal2_zphot_q030     real,
    hostgal2_zphot_q040     real,
    hostgal2_zphot_q050     real,
    hostgal2_zphot_q060     real,
    hostgal2_zphot_q070     real,
    hostgal2_zphot_q080     real,
    hostgal2_zphot_q090     real,
    hostgal2_zphot_q100     real,
    hostgal2_mag_u          real,
    hostgal2_mag_g          real,
    hostgal2_mag_r          real,
    hostgal2_mag_i          real,
    hostgal2_mag_z          real,
    hostgal2_mag_y          real,
    hostgal2_ra             real,
    hostgal2_dec            real,
    hostgal2_snsep          real,
    hostgal2_magerr_u       real,
    hostgal2_magerr_g       real,
    hostgal2_magerr_r       real,
    hostgal2_magerr_i       real,
    hostgal2_magerr_z       real,
    hostgal2_magerr_y       real
);

-- What the simulation knows and a survey would not: never streamed.
CREATE TABLE sim.object_truth (
    diaobject_id       bigint PRIMARY KEY,
    gentype            integer NOT NULL,       -- SNANA SIM_TYPE_INDEX (elasticc_origmap)
    sim_model_name     text NOT NULL,
    sim_template_index integer NOT NULL,
    zcmb               real NOT NULL,
    zhelio             real NOT NULL,
    peakmjd            double precision NOT NULL,
    mjd_detect_first   double precision NOT NULL,
    mjd_detect_last    double precision NOT NULL,
    peakmag_u          real NOT NULL,
    peakmag_g          real NOT NULL,
    peakmag_r          real NOT NULL,
    peakmag_i          real NOT NULL,
    peakmag_z          real NOT NULL,
    peakmag_y          real NOT NULL
);
CREATE INDEX object_truth_gentype ON sim.object_truth (gentype);

-- Every real epoch of every object: the forced photometry (nJy at zero point 31.4).
CREATE TABLE sim.diaforcedsource (
    diaforcedsource_id bigint PRIMARY KEY,     -- diaobject_id * 100000 + epoch index
    diaobject_id   bigint NOT NULL,
    midpointtai    double precision NOT NULL,
    filtername     text NOT NULL,
    psflux         real NOT NULL,
    psfluxerr      real NOT NULL
);
-- The sender reads an object's forced photometry in a time window.
CREATE INDEX diaforcedsource_object_time ON sim.diaforcedsource (diaobject_id, midpointtai);

-- The detected epochs (PHOTFLAG & 4096): same id as their forced source.
CREATE TABLE sim.diasource (
    diasource_id   bigint PRIMARY KEY,
    diaobject_id   bigint NOT NULL,
    midpointtai    double precision NOT NULL,
    filtername     text NOT NULL,
    ra             double precision NOT NULL,
    decl           double precision NOT NULL,
    psflux         real NOT NULL,
    psfluxerr      real NOT NULL,
    snr            real NOT NULL
);
CREATE INDEX diasource_object_time ON sim.diasource (diaobject_id, midpointtai);

-- One run of `tomstream sim send`; its counts grow batch by batch, in the same transaction
-- that marks the batch's alerts sent, so they stay exact after a crash.
CREATE TABLE sim.send_log (
    send_id              bigserial PRIMARY KEY,
    started_at           timestamptz NOT NULL DEFAULT now(),
    finished_at          timestamptz,
    through_mjd          double precision NOT NULL,
    topic_prefix         text NOT NULL,
    alerts               integer NOT NULL DEFAULT 0,
    wfd_messages         integer NOT NULL DEFAULT 0,
    ddf_full_messages    integer NOT NULL DEFAULT 0,
    ddf_limited_messages integer NOT NULL DEFAULT 0
);

-- One alert per diaSource (alert_id = diasource_id). midpointtai is the source's, copied here
-- so that the sender's "next unsent alerts in time order" reads one index.
CREATE TABLE sim.alert (
    alert_id       bigint PRIMARY KEY,
    diasource_id   bigint NOT NULL,
    diaobject_id   bigint NOT NULL,
    midpointtai    double precision NOT NULL,
    sent_at        timestamptz,                -- set once Kafka confirmed delivery
    send_id        bigint                      -- the sim.send_log run that sent it
);
CREATE INDEX alert_unsent ON sim.alert (midpointtai, alert_id) WHERE sent_at IS NULL;
CREATE INDEX alert_sent ON sim.alert (midpointtai) WHERE sent_at IS NOT NULL;
