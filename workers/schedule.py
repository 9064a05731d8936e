"""The beat schedule: the one place that says what runs periodically."""

from __future__ import annotations

from typing import Any

from shared.jobs import TaskName
from shared.settings import Settings

EXPIRY_SWEEP_SECONDS = 15.0
STRANDED_SWEEP_SECONDS = 10.0


def beat_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Queues come from the app's task_routes, like every other publish."""
    period = settings.pool_maintenance_seconds
    return {
        "maintain-pool": {
            "task": TaskName.MAINTAIN_POOL.value,
            "schedule": period,
            # a run that waited longer than its period is stale: the next one supersedes it
            "options": {"expires": period},
        },
        "sweep-stranded": {
            "task": TaskName.SWEEP_STRANDED.value,
            "schedule": STRANDED_SWEEP_SECONDS,
            "options": {"expires": STRANDED_SWEEP_SECONDS},
        },
        "expire-conversations": {
            "task": TaskName.EXPIRE_CONVERSATIONS.value,
            "schedule": EXPIRY_SWEEP_SECONDS,
            "options": {"expires": EXPIRY_SWEEP_SECONDS},
        },
    }
