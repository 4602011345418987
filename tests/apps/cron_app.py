"""A task module with a schedule that fires every second (tests of the scheduler)."""

from __future__ import annotations

import os

from spikard_tasks import CronSchedule, TaskQueue

queue = TaskQueue(os.environ.get("SPIKARD_TASKS_URL", "sqlite:///cron-test.db"), poll_interval=0.01)


@queue.task(name="tick")
def tick() -> str:
    return "tock"


SCHEDULE = CronSchedule(
    "* * * * * *", task="tick", name=os.environ.get("SPIKARD_TEST_SCHEDULE", "every-second")
)
