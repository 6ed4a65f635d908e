"""S3 as berth keeps its lock and deploy records there: buckets set up as
berth sets them up, conditional writes and deletes, and races between
writers, all through the sandbox's endpoint (an IP address, so path-style)."""

from __future__ import annotations

import hashlib
import threading
import time

import botocore.config
import botocore.exceptions
import pytest
from conftest import ACCOUNT_ID, unique

WRITERS = 8


@pytest.fixture
def s3(sandbox):
    return sandbox.client("s3")


@pytest.fixture
def bucket(s3):
    name = unique("berth-state")
    s3.create_bucket(Bucket=name)
    return name


def no_retries(sandbox):
    return sandbox.client("s3", config=botocore.config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))


def refused(call, **kwargs) -> tuple[int, str]:
    """(HTTP status, error code) of a call that must fail."""
    with pytest.raises(botocore.exceptions.ClientError) as caught:
        call(**kwargs)
    response = caught.value.response
    return response["ResponseMetadata"]["HTTPStatusCode"], response["Error"]["Code"]


def body_of(s3, bucket: str, key: str) -> bytes:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read()


# -- buckets -------------------------------------------------------------


def test_bucket_setup_path_style(sandbox, s3):
    sent = []
    s3.meta.events.register("before-send", lambda request, **_: sent.append(request.url))
    name = unique("berth-state")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_public_access_block(
        Bucket=name,
        PublicAccessBlockConfiguration={
            "BlockPublicAcls": True,
            "IgnorePublicAcls": True,
            "BlockPublicPolicy": True,
            "RestrictPublicBuckets": True,
        },
    )
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )
    assert s3.head_bucket(Bucket=name)["ResponseMetadata"]["HTTPStatusCode"] == 200
    # Path-style: the bucket is the first path segment on the sandbox's address.
    assert sent and all(url.startswith(f"{sandbox.url}/{name}") for url in sent)

    assert s3.get_bucket_versioning(Bucket=name)["Status"] == "Enabled"
    block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    [rule] = s3.get_bucket_encryption(Bucket=name)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rule["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    written = s3.put_object(Bucket=name, Key="lock", Body=b"{}")
    assert written["ServerSideEncryption"] == "AES256"
    assert written["VersionId"]


def test_head_bucket_of_a_missing_bucket_is_404(s3):
    assert refused(s3.head_bucket, Bucket=unique("no-such-bucket")) == (404, "404")


def test_get_caller_identity(sandbox):
    identity = sandbox.client("sts").get_caller_identity()
    assert identity["Account"] == ACCOUNT_ID
    assert identity["Arn"].split(":")[4] == ACCOUNT_ID


# -- conditional writes ----------------------------------------------------


def test_if_none_match_creates_only_a_new_key(s3, bucket):
    created = s3.put_object(Bucket=bucket, Key="lock", Body=b"mine", IfNoneMatch="*")
    assert created["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert refused(s3.put_object, Bucket=bucket, Key="lock", Body=b"theirs", IfNoneMatch="*") == (
        412,
        "PreconditionFailed",
    )
    assert body_of(s3, bucket, "lock") == b"mine"


def test_if_none_match_takes_only_a_star(s3, bucket):
    """S3 accepts only `*`; any other value is 501 NotImplemented, and nothing is written."""
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"mine")
    status, code = refused(s3.put_object, Bucket=bucket, Key="lock", Body=b"theirs", IfNoneMatch=first["ETag"])
    assert (status, code) == (501, "NotImplemented")
    assert body_of(s3, bucket, "lock") == b"mine"


def test_if_none_match_after_a_delete_marker_creates(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="lock", Body=b"old")
    s3.delete_object(Bucket=bucket, Key="lock")  # a delete marker is now the current version
    s3.put_object(Bucket=bucket, Key="lock", Body=b"new", IfNoneMatch="*")
    assert body_of(s3, bucket, "lock") == b"new"


def test_if_match_updates_only_the_current_etag(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="record", Body=b"v1")
    second = s3.put_object(Bucket=bucket, Key="record", Body=b"v2", IfMatch=first["ETag"])
    assert second["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert second["ETag"] != first["ETag"]
    # The first ETag is stale now.
    assert refused(s3.put_object, Bucket=bucket, Key="record", Body=b"v3", IfMatch=first["ETag"]) == (
        412,
        "PreconditionFailed",
    )
    assert body_of(s3, bucket, "record") == b"v2"
    # Quoted or bare, the ETag is the same ETag.
    third = s3.put_object(Bucket=bucket, Key="record", Body=b"v3", IfMatch=second["ETag"].strip('"'))
    assert s3.head_object(Bucket=bucket, Key="record")["ETag"] == third["ETag"]


def test_if_match_on_a_missing_key_is_no_such_key(s3, bucket):
    assert refused(s3.put_object, Bucket=bucket, Key="record", Body=b"v1", IfMatch='"0123456789abcdef"') == (
        404,
        "NoSuchKey",
    )
    assert refused(s3.head_object, Bucket=bucket, Key="record")[0] == 404


def test_etag_is_the_md5_of_the_content(s3, bucket):
    """Rewriting the same bytes gives the same ETag, so an `If-Match` holder
    cannot tell that someone rewrote them (as on S3 for single-part,
    unencrypted or SSE-S3 objects)."""
    first = s3.put_object(Bucket=bucket, Key="record", Body=b"same")
    assert first["ETag"] == f'"{hashlib.md5(b"same").hexdigest()}"'
    again = s3.put_object(Bucket=bucket, Key="record", Body=b"same", IfMatch=first["ETag"])
    assert again["ETag"] == first["ETag"]
    # ...so the first holder's ETag still matches after the rewrite.
    s3.put_object(Bucket=bucket, Key="record", Body=b"changed", IfMatch=first["ETag"])


# -- conditional deletes ---------------------------------------------------


def test_delete_if_match(s3, bucket):
    first = s3.put_object(Bucket=bucket, Key="lock", Body=b"v1")
    second = s3.put_object(Bucket=bucket, Key="lock", Body=b"v2")
    assert refused(s3.delete_object, Bucket=bucket, Key="lock", IfMatch=first["ETag"]) == (412, "PreconditionFailed")
    assert body_of(s3, bucket, "lock") == b"v2"
    deleted = s3.delete_object(Bucket=bucket, Key="lock", IfMatch=second["ETag"])
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert refused(s3.head_object, Bucket=bucket, Key="lock")[0] == 404
    # Gone: an ETag can no longer match.
    assert refused(s3.delete_object, Bucket=bucket, Key="lock", IfMatch=second["ETag"]) == (404, "NoSuchKey")


def test_delete_if_match_star_needs_an_object(s3, bucket):
    s3.put_object(Bucket=bucket, Key="lock", Body=b"v1")
    assert s3.delete_object(Bucket=bucket, Key="lock", IfMatch="*")["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert refused(s3.head_object, Bucket=bucket, Key="lock")[0] == 404
    assert refused(s3.delete_object, Bucket=bucket, Key="lock", IfMatch="*") == (404, "NoSuchKey")


def test_delete_if_match_in_a_versioned_bucket_leaves_a_delete_marker(s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    written = s3.put_object(Bucket=bucket, Key="lock", Body=b"v1")
    deleted = s3.delete_object(Bucket=bucket, Key="lock", IfMatch=written["ETag"])
    assert deleted["DeleteMarker"] is True
    # The delete marker is the current version: no ETag matches it.
    assert refused(s3.delete_object, Bucket=bucket, Key="lock", IfMatch=written["ETag"]) == (404, "NoSuchKey")
    assert refused(s3.put_object, Bucket=bucket, Key="lock", Body=b"v2", IfMatch=written["ETag"]) == (
        404,
        "NoSuchKey",
    )


# -- races -------------------------------------------------------------------


def race(sandbox, attempt) -> list[tuple[int, str]]:
    """Run `attempt(client, index)` in WRITERS threads released at the same moment;
    (status, code or ETag) of each. Each request is held 300 ms before it
    reaches moto, so all of them are in flight together."""
    sandbox.admin("POST", "faults", {"service": "s3", "latency_ms": 300})
    clients = [no_retries(sandbox) for _ in range(WRITERS)]
    start = threading.Barrier(WRITERS)
    outcomes: list[tuple[int, str]] = [(0, "")] * WRITERS

    def run(index: int) -> None:
        start.wait()
        try:
            response = attempt(clients[index], index)
            outcomes[index] = (response["ResponseMetadata"]["HTTPStatusCode"], response.get("ETag", ""))
        except botocore.exceptions.ClientError as err:
            outcomes[index] = (err.response["ResponseMetadata"]["HTTPStatusCode"], err.response["Error"]["Code"])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(WRITERS)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    elapsed = time.monotonic() - began
    sandbox.admin("DELETE", "faults")
    # The 300 ms holds ran side by side, not one after another.
    assert elapsed < 0.3 * WRITERS / 2, f"the writers did not overlap ({elapsed:.2f}s)"
    return outcomes


def test_racing_creates_one_wins(sandbox, s3, bucket):
    outcomes = race(
        sandbox,
        lambda client, i: client.put_object(Bucket=bucket, Key="lock", Body=f"writer {i}".encode(), IfNoneMatch="*"),
    )
    winners = [i for i, (status, _) in enumerate(outcomes) if status == 200]
    assert len(winners) == 1, outcomes
    assert sorted(code for status, code in outcomes if status != 200) == ["PreconditionFailed"] * (WRITERS - 1)
    assert {status for status, _ in outcomes} == {200, 412}
    assert body_of(s3, bucket, "lock") == f"writer {winners[0]}".encode()


def test_racing_updates_of_one_etag_one_wins(sandbox, s3, bucket):
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    seen = s3.put_object(Bucket=bucket, Key="record", Body=b"v1")["ETag"]
    outcomes = race(
        sandbox,
        lambda client, i: client.put_object(Bucket=bucket, Key="record", Body=f"writer {i}".encode(), IfMatch=seen),
    )
    winners = [i for i, (status, _) in enumerate(outcomes) if status == 200]
    assert len(winners) == 1, outcomes
    assert sorted(code for status, code in outcomes if status != 200) == ["PreconditionFailed"] * (WRITERS - 1)
    assert body_of(s3, bucket, "record") == f"writer {winners[0]}".encode()
    # Exactly one new version was written.
    versions = s3.list_object_versions(Bucket=bucket, Prefix="record")["Versions"]
    assert len(versions) == 2


def test_racing_deletes_of_one_etag_one_wins(sandbox, s3, bucket):
    seen = s3.put_object(Bucket=bucket, Key="lock", Body=b"v1")["ETag"]
    outcomes = race(sandbox, lambda client, i: client.delete_object(Bucket=bucket, Key="lock", IfMatch=seen))
    assert sorted(status for status, _ in outcomes) == [204] + [404] * (WRITERS - 1), outcomes


# -- a lost answer -------------------------------------------------------------


def test_a_lost_create_retried_by_the_sdk_finds_its_own_lock(sandbox, s3, bucket):
    """The harsh case for a lock: the create is applied, its answer is lost,
    the SDK retries, and the retry sees the lock taken. Only the body tells
    the writer that the lock is its own."""
    sandbox.admin("POST", "faults", {"service": "s3", "operation": "PutObject", "error": "lost", "first": 1})
    assert refused(s3.put_object, Bucket=bucket, Key="lock", Body=b"holder-1", IfNoneMatch="*") == (
        412,
        "PreconditionFailed",
    )
    assert body_of(s3, bucket, "lock") == b"holder-1"
    [rule] = sandbox.admin("GET", "faults")
    assert (rule["matched"], rule["fired"]) == (2, 1)


# -- operation names and faults ------------------------------------------------


def test_s3_calls_are_counted_by_their_api_names(sandbox, s3, bucket):
    sandbox.admin("DELETE", "counters")
    s3.put_object(Bucket=bucket, Key="a/b.json", Body=b"{}")
    s3.get_object(Bucket=bucket, Key="a/b.json")
    s3.list_objects_v2(Bucket=bucket, Prefix="a/")
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.head_bucket(Bucket=bucket)
    counted = sandbox.admin("GET", "counters")
    for name in ("PutObject", "GetObject", "ListObjectsV2", "PutBucketVersioning", "HeadBucket"):
        assert counted.get(f"s3:{name}") == 1, (name, counted)


def test_an_s3_throttle_is_s3s_slow_down_and_the_sdk_retries_it(sandbox, s3, bucket):
    sandbox.admin("POST", "faults", {"service": "s3", "operation": "PutObject", "error": "throttle", "first": 2})
    s3.put_object(Bucket=bucket, Key="k", Body=b"v")
    assert body_of(s3, bucket, "k") == b"v"
    [rule] = sandbox.admin("GET", "faults")
    assert (rule["matched"], rule["fired"]) == (3, 2)
    sandbox.admin("POST", "faults", {"service": "s3", "operation": "GetObject", "error": "throttle"})
    assert refused(no_retries(sandbox).get_object, Bucket=bucket, Key="k") == (503, "SlowDown")
