"""Secrets and deployment facts in SSM Parameter Store.

The ``private-keys`` namespace lives here, not in DynamoDB: each record is
the SecureString ``<prefix>/private-keys/<username>``, encrypted with the
account's SSM key and read only when a signature needs it. The deployment
writes the domain name at ``<prefix>/domain``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from botocore.exceptions import ClientError  # type: ignore[import-untyped]

from ...errors import BadRequest
from ..base import Record
from .clients import AwsClients, error_code

PRIVATE_KEYS = "private-keys"

#: The characters SSM allows in one segment of a parameter name.
_SEGMENT = re.compile(r"[A-Za-z0-9_.-]{1,200}")


class Parameters:
    def __init__(self, clients: AwsClients, prefix: str) -> None:
        self.clients = clients
        self.prefix = prefix

    def _path(self, username: str) -> str:
        return f"{self.prefix}/{PRIVATE_KEYS}/{username}"

    async def domain(self) -> str:
        response = await self.clients.ssm.get_parameter(Name=f"{self.prefix}/domain")
        return str(response["Parameter"]["Value"]).strip()

    async def get(self, username: str) -> dict[str, Any] | None:
        if not _SEGMENT.fullmatch(username):
            return None
        try:
            response = await self.clients.ssm.get_parameter(
                Name=self._path(username), WithDecryption=True
            )
        except ClientError as exc:
            if error_code(exc) == "ParameterNotFound":
                return None
            raise
        value: dict[str, Any] = json.loads(response["Parameter"]["Value"])
        return value

    async def put(self, username: str, value: dict[str, Any], only_new: bool) -> bool:
        if not _SEGMENT.fullmatch(username):
            raise BadRequest(f"{username!r} cannot name a parameter")
        try:
            await self.clients.ssm.put_parameter(
                Name=self._path(username),
                Value=json.dumps(value),
                Type="SecureString",
                Overwrite=not only_new,
            )
        except ClientError as exc:
            if only_new and error_code(exc) == "ParameterAlreadyExists":
                return False
            raise
        return True

    async def delete(self, username: str) -> dict[str, Any] | None:
        old = await self.get(username)
        if old is None:
            return None
        try:
            await self.clients.ssm.delete_parameter(Name=self._path(username))
        except ClientError as exc:
            # Deleted by someone else in between: what it held is still the answer.
            if error_code(exc) != "ParameterNotFound":
                raise
        return old

    async def query(
        self, prefix: str, after: str | None, limit: int, descending: bool
    ) -> list[Record]:
        """The contract's query over private keys; nothing in Mumble needs it."""
        records: list[Record] = []
        kwargs: dict[str, Any] = {
            "Path": f"{self.prefix}/{PRIVATE_KEYS}",
            "WithDecryption": True,
        }
        while True:
            page = await self.clients.ssm.get_parameters_by_path(**kwargs)
            for parameter in page.get("Parameters", ()):
                username = str(parameter["Name"]).rsplit("/", 1)[-1]
                records.append(Record(username, json.loads(parameter["Value"])))
            if not page.get("NextToken"):
                break
            kwargs["NextToken"] = page["NextToken"]
        records.sort(key=lambda r: r.key, reverse=descending)
        return [
            r
            for r in records
            if r.key.startswith(prefix)
            and (after is None or (r.key < after if descending else r.key > after))
        ][: max(limit, 0)]
