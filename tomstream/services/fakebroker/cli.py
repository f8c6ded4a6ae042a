"""``tomstream fakebroker``."""

from __future__ import annotations

from tomstream.cli_options import BatchSize, ExitOnIdle, GroupId


def fakebroker(
    exit_on_idle: ExitOnIdle = None,
    group_id: GroupId = None,
    batch_size: BatchSize = 500,
) -> None:
    """A stand-in broker: classifies every alert of alerts-wfd and alerts-ddf-full.

    For each alert it produces two brokerClassification (v0_9_1) messages to `classifications`:
    NugentClassifier (params 100%) with (2222, 1.0), and RandomSNType (params Perfect) with 20
    classes whose probabilities sum to 1 (seeded by the alert id, so a replay says the same).
    brokerName FakeBroker, brokerVersion v1.0; elasticcPublishTimestamp = the alert's Kafka
    timestamp, brokerIngestTimestamp = now.
    """
    from tomstream.config import settings
    from tomstream.logs import configure_logging
    from tomstream.services.fakebroker.service import SERVICE, run

    configure_logging(settings().log_level, service=SERVICE)
    run(settings(), group_id=group_id, exit_on_idle_s=exit_on_idle, batch_size=batch_size)
