"""EventBridge Scheduler's `UpdateSchedule` as AWS documents it
(https://docs.aws.amazon.com/scheduler/latest/APIReference/API_UpdateSchedule.html):

- it replaces the whole schedule: a field left out takes its default, so an
  omitted `State` is `ENABLED` and an omitted `ActionAfterCompletion` is
  `NONE` (moto keeps the old `ActionAfterCompletion` and sets `State` to null);
- a `StartDate` more than five minutes in the past is refused with
  `ValidationException`, as `CreateSchedule` refuses it (moto checks it on
  create only);
- a body key the API does not define is refused (`ValidationException`),
  as AWS's REST-JSON validation refuses unknown members, so a client's own
  bookkeeping cannot slip through.
"""

from __future__ import annotations

import json
import time

from moto.scheduler.exceptions import ValidationException
from moto.scheduler.responses import EventBridgeSchedulerResponse

_moto_update_schedule = EventBridgeSchedulerResponse.update_schedule

UPDATE_MEMBERS = {
    "ActionAfterCompletion",
    "ClientToken",
    "Description",
    "EndDate",
    "FlexibleTimeWindow",
    "GroupName",
    "KmsKeyArn",
    "ScheduleExpression",
    "ScheduleExpressionTimezone",
    "StartDate",
    "State",
    "Target",
}


def _update_schedule(self: EventBridgeSchedulerResponse) -> str:
    body = json.loads(self.body or "{}")
    unknown = sorted(set(body) - UPDATE_MEMBERS)
    if unknown:
        raise ValidationException(f"Unknown parameters in the request: {', '.join(unknown)}")
    start = body.get("StartDate")
    if start is not None and float(start) < time.time() - 300:
        raise ValidationException("The StartDate you specify cannot be earlier than 5 minutes ago.")
    answer = _moto_update_schedule(self)
    name = self.uri.split("?")[0].split("/")[-1]
    schedule = self.scheduler_backend.get_schedule(body.get("GroupName"), name)
    schedule.state = body.get("State") or "ENABLED"
    schedule.action_after_completion = body.get("ActionAfterCompletion") or "NONE"
    return answer


def install() -> None:
    EventBridgeSchedulerResponse.update_schedule = _update_schedule
