"""Helpers of benches/fast_path.sh, against the sandbox (its environment variables set).

add APP N                  N Scheduler schedules in group APP-bulk, in another cluster
                           (APP-stg-elsewhere), running APP's web family: listed by a
                           survey, never read or moved
remove APP                 deletes group APP-bulk and its schedules
figures APP BEGAN ENDED LOG
                           seconds from the last `deployment completed` event of APP's
                           services to ENDED, and from BEGAN to the first UpdateService
                           in LOG (berth's log at `BERTH_LOG=berth=info`)
"""

from __future__ import annotations

import datetime
import re
import sys
from concurrent.futures import ThreadPoolExecutor

import boto3

REGION = "us-east-1"


def add(app: str, count: int) -> None:
    scheduler = boto3.client("scheduler", region_name=REGION)
    hourly = scheduler.get_schedule(Name=f"{app}-stg-hourly")["Target"]
    group = f"{app}-bulk"
    scheduler.create_schedule_group(Name=group)

    def create(n: int) -> None:
        scheduler.create_schedule(
            GroupName=group,
            Name=f"job-{n}",
            ScheduleExpression="rate(1 hour)",
            FlexibleTimeWindow={"Mode": "OFF"},
            Target={
                "Arn": f"{hourly['Arn']}-elsewhere",
                "RoleArn": hourly["RoleArn"],
                "EcsParameters": {
                    "TaskDefinitionArn": hourly["EcsParameters"]["TaskDefinitionArn"]
                },
            },
        )

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(create, range(count)))


def remove(app: str) -> None:
    boto3.client("scheduler", region_name=REGION).delete_schedule_group(
        Name=f"{app}-bulk"
    )


def figures(app: str, began: float, ended: float, log: str) -> None:
    ecs = boto3.client("ecs", region_name=REGION)
    services = ecs.describe_services(cluster=f"{app}-stg", services=["web", "devops"])[
        "services"
    ]
    completed = []
    for service in services:
        times = [
            e["createdAt"].timestamp()
            for e in service["events"]
            if "deployment completed" in e["message"]
        ]
        if not times:
            sys.exit(f"no `deployment completed` event of {service['serviceName']}")
        completed.append(max(times))
    update = None
    with open(log) as lines:
        for line in lines:
            if "calling UpdateService" in line:
                stamp = re.match(r"(\S+Z)", line).group(1)
                update = datetime.datetime.fromisoformat(stamp).timestamp()
                break
    if update is None:
        sys.exit(f"no UpdateService in {log}")
    print(f"{ended - max(completed):.3f} {update - began:.3f}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "add":
        add(args[0], int(args[1]))
    elif command == "remove":
        remove(args[0])
    elif command == "figures":
        figures(args[0], float(args[1]), float(args[2]), args[3])
    else:
        sys.exit(f"unknown command {command}")
