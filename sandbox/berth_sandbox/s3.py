"""S3's conditional writes and deletes as S3 documents them. moto 5.2.5
already checks `If-None-Match: *` and `If-Match: <etag>` on PutObject and
`If-Match: <etag>` on DeleteObject (412 PreconditionFailed, 404 NoSuchKey for
`If-Match` on a missing key), and the server runs every request under
`agent.LOCK`, so each check and its write are one atomic step. What this module
adds:

- PutObject with `If-None-Match` other than `*` is refused with 501
  NotImplemented, as S3 does: S3 accepts only `*` there, and moto would ignore
  the header and overwrite the object
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_PutObject.html);
- DeleteObject with `If-Match: *` deletes the object when there is one (404
  NoSuchKey when there is none), where moto compares `*` with the ETag and
  answers 412
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-deletes.html);
- a bucket of another account answers only what its bucket policy allows the
  caller (`policy.py`): moto finds a bucket by name whoever asks, S3 refuses
  the caller 403 AccessDenied unless the owner's policy grants the action
  (https://docs.aws.amazon.com/AmazonS3/latest/userguide/example-walkthroughs-managing-access-example2.html).
  A missing key is 403 too, not 404, unless the policy also grants
  `s3:ListBucket`, as S3 answers
  (https://docs.aws.amazon.com/AmazonS3/latest/API/API_GetObject.html).
"""

from __future__ import annotations

import uuid
from xml.sax.saxutils import escape

from moto.s3.exceptions import MissingKey
from moto.s3.models import s3_backends
from moto.s3.responses import S3Response

from .accounts import caller_arn
from .policy import allows

# The S3 action each operation is, as IAM names it; the rest are `s3:<operation>`.
ACTIONS = {
    "GetObject": "s3:GetObject",
    "HeadObject": "s3:GetObject",
    "PutObject": "s3:PutObject",
    "DeleteObject": "s3:DeleteObject",
    "ListObjectsV2": "s3:ListBucket",
    "ListObjects": "s3:ListBucket",
    "HeadBucket": "s3:ListBucket",
    "GetObjectTagging": "s3:GetObjectTagging",
    "PutObjectTagging": "s3:PutObjectTagging",
}

_moto_put_object = S3Response.put_object
_moto_delete_object = S3Response.delete_object


def _not_implemented(header: str):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error><Code>NotImplemented</Code>"
        "<Message>A header you provided implies functionality that is not implemented</Message>"
        f"<Header>{escape(header)}</Header><RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return 501, {"Content-Type": "application/xml"}, body


def _put_object(self: S3Response):
    if_none_match = self.headers.get("If-None-Match")
    if if_none_match is not None and if_none_match.strip() != "*":
        return _not_implemented("If-None-Match")
    return _moto_put_object(self)


def _delete_object(self: S3Response):
    if_match = self.headers.get("If-Match")
    if if_match is None or if_match.strip() != "*":
        return _moto_delete_object(self)
    # `*` matches any ETag of the current version; no current version (none,
    # or a delete marker) is NoSuchKey, as for an ETag.
    key_name = self.parse_key_name()
    if self.backend.get_object(self.bucket_name, key_name) is None:
        raise MissingKey(key=key_name)
    _, meta = self.backend.delete_object(
        self.bucket_name,
        key_name,
        version_id=self._get_param("versionId"),
        bypass=self.headers.get("X-Amz-Bypass-Governance-Retention"),
    )
    return 204, {f"x-amz-{k}": v for k, v in meta.items()}, ""


def refused(path: str, operation: str, caller: str) -> bool:
    """Whether S3 refuses `caller` `operation` on `path` (`/bucket[/key]`): the bucket is
    another account's, and its policy does not allow the caller."""
    bucket, _, key = path.lstrip("/").partition("/")
    owner = s3_backends.bucket_accounts.get(bucket)
    if not bucket or owner is None or owner[1] == caller:
        return False
    found = s3_backends[owner[1]][owner[0]].buckets.get(bucket)
    policy = found.policy.decode() if found is not None and found.policy else None
    action = ACTIONS.get(operation, f"s3:{operation}")
    resource = f"arn:aws:s3:::{bucket}/{key}" if key else f"arn:aws:s3:::{bucket}"
    who = caller_arn(caller)
    if not allows(policy, caller, who, action, resource):
        return True
    if operation in ("GetObject", "HeadObject") and key not in found.keys:
        return not allows(policy, caller, who, "s3:ListBucket", f"arn:aws:s3:::{bucket}")
    return False


def install() -> None:
    S3Response.put_object = _put_object
    S3Response.delete_object = _delete_object
