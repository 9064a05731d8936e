"""The beat schedule: the one place that says what runs periodically."""

from __future__ import annotations

from typing import Any

from shared.jobs import QUEUE_OF, TaskName

POOL_MAINTENANCE_SECONDS = 60.0
EXPIRY_SWEEP_SECONDS = 15.0


def beat_schedule() -> dict[str, dict[str, Any]]:
    return {
        "maintain-pool": {
            "task": TaskName.MAINTAIN_POOL.value,
            "schedule": POOL_MAINTENANCE_SECONDS,
            # a run that waited longer than its period is stale: the next one supersedes it
            "options": {"queue": QUEUE_OF[TaskName.MAINTAIN_POOL].value,
                        "expires": POOL_MAINTENANCE_SECONDS},
        },
        "expire-conversations": {
            "task": TaskName.EXPIRE_CONVERSATIONS.value,
            "schedule": EXPIRY_SWEEP_SECONDS,
            "options": {"queue": QUEUE_OF[TaskName.EXPIRE_CONVERSATIONS].value,
                        "expires": EXPIRY_SWEEP_SECONDS},
        },
    }
