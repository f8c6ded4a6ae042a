-- The services moved under the tomstream namespace (services.cadence → tomstream.services.cadence):
-- cadences created before keep working because their strategy's dotted path moves with it.
UPDATE dynamic_cadence
SET strategy = 'tomstream.' || strategy
WHERE strategy LIKE 'services.cadence.%';
