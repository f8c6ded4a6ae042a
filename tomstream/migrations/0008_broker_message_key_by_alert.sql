-- broker_message: the unique key now leads with alert_id, so it also serves lookups by alert and
-- the separate alert_id index goes. One index fewer to update per stored message; PostgreSQL's
-- ON CONFLICT finds the key by its set of columns, so the inserts are unchanged.
ALTER TABLE broker_message
    ADD CONSTRAINT broker_message_alert_classifier_content_key
    UNIQUE (alert_id, classifier_id, content_hash);
ALTER TABLE broker_message DROP CONSTRAINT broker_message_classifier_id_alert_id_content_hash_key;
DROP INDEX broker_message_alert;
