"""Accounts and regions. moto keeps one backend per account and region: the
region comes from the request's SigV4 scope, the account from the caller. The
sandbox's default credentials (`testing`) are the default account's; each other
account has fixed keys of its own, `AKIA<account>SBOX` with the secret
`testing`, which the server turns into moto's account header, so that a test
or a seed acts in a second account by its keys alone, as it would with a
second account's role in AWS.
"""

from __future__ import annotations

import re

from .config import ACCOUNT_ID

# A second account and region for promotions across accounts and regions
# (`sandboxctl seed --account`, `--region`).
SECOND_ACCOUNT = "210987654321"
SECOND_REGION = "us-west-2"

_KEY = re.compile(r"^AKIA(\d{12})SBOX$")


def access_key(account: str) -> str:
    """The access key id that acts in `account`."""
    return "testing" if account == ACCOUNT_ID else f"AKIA{account}SBOX"


def account_of_key(key: str) -> str | None:
    """The account an `AKIA<account>SBOX` key names; None for any other key."""
    found = _KEY.match(key)
    return found.group(1) if found else None


def caller_arn(account: str) -> str:
    """Who a call with the account's sandbox keys is, as an IAM policy names it."""
    return f"arn:aws:iam::{account}:user/sandbox"
