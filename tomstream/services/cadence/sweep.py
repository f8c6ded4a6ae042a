"""``tomstream cadence sweep``: the safety net for status events that never led to a decision.

It re-evaluates every active cadence whose latest observation is terminal but has no follow-up
(or whose end_time passed), under the same row locks and unique constraints as the stream, so it
is safe to run at any time, alongside the worker; a Kubernetes CronJob runs it periodically.
Triggers go to the outbox and are published before the command returns.
"""

from __future__ import annotations

import psycopg

from tomstream.config import Settings
from tomstream.outbox import OutboxRelay
from tomstream.services.cadence.config import CadenceConfig
from tomstream.services.cadence.service import Decider, SweepReport


def sweep(settings: Settings, config: CadenceConfig) -> tuple[SweepReport, int]:
    """Sweep, then publish what is pending in the outbox; return the report and how many
    outbox events were published (a worker's relay may have published some first)."""
    decider = Decider(settings, config)
    try:
        report = decider.sweep()
    finally:
        decider.close()
    with psycopg.connect(settings.postgres_dsn) as conn:
        published = OutboxRelay(settings).publish_pending(conn)
    return report, published
