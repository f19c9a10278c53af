"""Alert channels through the API: ``/api/0/organizations/{org}/alert-channels/``.

Every route needs a write token, reads included: a channel's URL is itself a credential
(a Slack incoming webhook, a receiver's address), so read tokens, which dashboards hold,
get 403. The SQL is ``schemas.channels``, the one implementation the CLI and the notifier
use too; it is synchronous psycopg, so each request runs it in a thread on its own
short-lived connection (channel management is rare; the pools stay async).

A test notification is queued (202), not sent: the API never imports ``notifier``, and
queued tests are delivered by the notifier like any event (a delivered one revives a
failing channel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

import psycopg
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api.errors import BadParameter, NotFound
from api.resolve import Organization, write_grant
from api.routes import ERRORS
from schemas import channels
from schemas.api import ErrorBody
from schemas.destinations import DestinationRefused, resolve_destination
from schemas.settings import load

__all__ = ["channel_routes"]

T = TypeVar("T")
CHANNEL_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS, 403: {"model": ErrorBody, "description": "The token can only read"}}
ChannelId = Annotated[str, Path(description="Channel id (as returned on creation)")]
MAX_LOG_LIMIT = 1000


class ChannelCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: Literal["webhook", "slack", "pagerduty"]
    url: str = Field(min_length=1, max_length=2000)
    routing_key: str | None = Field(default=None, alias="routingKey", min_length=1, max_length=200,
                                    description="pagerduty: the integration (routing) key")


class ChannelCreated(BaseModel):
    id: str
    kind: str
    url: str
    secret: str = Field(description="HMAC key of X-Cronpipe-Signature; shown only here, once")


class ChannelOut(BaseModel):
    id: str
    kind: str
    url: str
    org: str
    isFailing: bool
    consecutiveFailures: int
    dateCreated: str


class ChannelList(BaseModel):
    channels: list[ChannelOut]


class LogEntry(BaseModel):
    eventId: str
    attempt: int
    outcome: str
    statusCode: int | None
    latencyMs: int | None
    error: str | None
    dateCreated: str


class ChannelLog(BaseModel):
    id: str
    attempts: list[LogEntry]


class TestQueued(BaseModel):
    id: str
    eventId: str
    queued: bool = True


def _no_nul(value: str, parameter: str) -> None:
    if "\x00" in value:  # PostgreSQL text cannot hold it
        raise BadParameter(parameter, "must not contain NUL bytes")


async def _run(request: Request, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
    url: str = request.app.state.database_url

    def call() -> T:
        with psycopg.connect(url, autocommit=True, connect_timeout=3) as conn:
            return fn(conn)

    try:
        return await asyncio.to_thread(call)
    except channels.ChannelError as exc:  # only lookups raise it here: the body was checked first
        raise NotFound(str(exc)) from None


def channel_routes() -> APIRouter:
    router = APIRouter(responses=CHANNEL_ERRORS, dependencies=[Depends(write_grant)])

    @router.post("/alert-channels/", status_code=201, response_model=ChannelCreated,
                 summary="Create an alert channel (the secret is shown once)")
    async def create_channel(org: Organization, request: Request, body: ChannelCreate) -> ChannelCreated:
        _no_nul(body.url, "url")
        if body.kind == "pagerduty" and not body.routing_key:
            raise BadParameter("routingKey", "a pagerduty channel needs the integration (routing) key")
        if body.routing_key is not None:
            _no_nul(body.routing_key, "routingKey")
        try:
            await asyncio.to_thread(resolve_destination, body.url, allow_private=load().notify_allow_private)
        except DestinationRefused as exc:
            raise BadParameter("url", str(exc)) from None
        channel, secret = await _run(request, lambda conn: channels.create_channel(
            conn, str(org.id), body.kind, body.url, body.routing_key))
        return ChannelCreated(id=str(channel.guid), kind=channel.kind, url=channel.url, secret=secret)

    @router.get("/alert-channels/", response_model=ChannelList,
                summary="The organization's alert channels (never their secrets)")
    async def list_channels(org: Organization, request: Request) -> ChannelList:
        found = await _run(request, lambda conn: channels.list_channels(conn, str(org.id)))
        return ChannelList(channels=[ChannelOut(**c.public()) for c in found])

    @router.get("/alert-channels/{channel_id}/", response_model=ChannelOut, summary="One alert channel")
    async def get_channel(org: Organization, request: Request, channel_id: ChannelId) -> ChannelOut:
        found = await _run(request, lambda conn: channels.find_channel(conn, str(org.id), channel_id))
        return ChannelOut(**found.public())

    @router.delete("/alert-channels/{channel_id}/", status_code=204, response_class=Response,
                   responses={204: {"description": "Deleted, with its pending deliveries and log"}},
                   summary="Delete an alert channel")
    async def delete_channel(org: Organization, request: Request, channel_id: ChannelId) -> Response:
        await _run(request, lambda conn: channels.delete_channel(conn, str(org.id), channel_id))
        return Response(status_code=204)

    @router.get("/alert-channels/{channel_id}/log/", response_model=ChannelLog,
                summary="The channel's delivery attempts, newest first")
    async def channel_log(
        org: Organization, request: Request, channel_id: ChannelId,
        limit: Annotated[int, Query(ge=1, le=MAX_LOG_LIMIT, description="At most this many attempts")] = 100,
    ) -> ChannelLog:
        rows = await _run(request, lambda conn: channels.read_log(conn, str(org.id), channel_id, limit=limit))
        return ChannelLog(id=channel_id, attempts=[LogEntry(**r) for r in rows])

    @router.post("/alert-channels/{channel_id}/test/", status_code=202, response_model=TestQueued,
                 summary="Queue a test notification; the notifier sends it (a delivered one revives the channel)")
    async def test_channel(org: Organization, request: Request, channel_id: ChannelId) -> TestQueued:
        def queue(conn: psycopg.Connection[Any]) -> TestQueued:
            found = channels.find_channel(conn, str(org.id), channel_id)
            return TestQueued(id=str(found.guid), eventId=str(channels.enqueue_test(conn, found)))

        return await _run(request, queue)

    return router

