-- Light curves for the spectra API (ltcv, gethottransients, spectrawanted) read straight from
-- the photometry indexes. With the points' values in the index (INCLUDE), one object's points
-- are one contiguous index range and an index-only scan never visits the heap: that matters
-- because ingest writes rows in alert order, so one object's points are spread over as many
-- heap pages as it has points. gethottransients reads thousands of objects per request.
--
-- Each replaces 0003's index on the same key (a wider index, not one more for ingest to keep
-- up to date); 0005's diasource_mjd_object is folded into diasource_mjd.
DROP INDEX diaforcedsource_object_mjd;
CREATE INDEX diaforcedsource_object_mjd ON diaforcedsource (diaobject_id, mjd)
    INCLUDE (band, flux, flux_err);

DROP INDEX diasource_object_mjd;
CREATE INDEX diasource_object_mjd ON diasource (diaobject_id, mjd)
    INCLUDE (band, flux, flux_err);

-- The objects detected in a time window (gethottransients, spectrawanted): index-only.
DROP INDEX diasource_mjd_object;
DROP INDEX diasource_mjd;
CREATE INDEX diasource_mjd ON diasource (mjd) INCLUDE (diaobject_id);
