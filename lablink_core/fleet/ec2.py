"""EC2 calls the provider makes itself (Terraform has no reboot): a boto3 client built from
the same AWS environment Terraform gets, so keys, profile and endpoint always agree."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

Ec2Factory = Callable[[Mapping[str, str], str], Any]
"""Builds an EC2 client from Terraform's AWS environment and a region."""


def ec2_client(env: Mapping[str, str], region: str) -> Any:
    """A boto3 EC2 client for ``region`` with the keys (or profile) and endpoint of ``env``.

    Without keys or a profile in ``env``, boto3 finds its own (an instance profile). Proxies
    are boto3's own (the process environment), as for any other AWS call of the server.
    """
    import boto3  # imported here: it is slow to import, and only healing needs it
    from botocore.config import Config  # type: ignore[import-untyped]

    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        profile_name=env.get("AWS_PROFILE"),
        region_name=region,
    )
    attempts = env.get("AWS_MAX_ATTEMPTS", "")
    config = Config(retries={"max_attempts": int(attempts)}) if attempts.isdigit() else None
    endpoint = env.get("AWS_ENDPOINT_URL_EC2") or env.get("AWS_ENDPOINT_URL")
    return session.client("ec2", endpoint_url=endpoint or None, config=config)
