"""A local AWS account that behaves like ECS, for berth's tests and demos.

moto server provides the AWS APIs; this package closes the gaps that matter to
a deploy tool: an agent that really runs ECS tasks as containers, services that
roll out (and fail, and roll back), a real registry as ECR's data plane, fault
and latency injection, and request counters.
"""
