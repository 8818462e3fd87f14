"""Share links: signed, expiring, revocable, not forgeable from the database."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from gateway.store.shares import Share, ShareRefusal, ShareStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


async def test_a_link_opens_until_it_expires(tmp_path: Path, clock: Clock) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    share = await shares.create("rec-1", "shop", clock.now + 3600)
    token = share.token(shares.key)
    opened = await shares.resolve(token)
    assert isinstance(opened, Share) and opened.recording_id == "rec-1"
    clock.now += 3599
    assert isinstance(await shares.resolve(token), Share)
    clock.now += 1
    assert await shares.resolve(token) is ShareRefusal.EXPIRED
    await shares.close()


async def test_revoked_links_stop_working(tmp_path: Path, clock: Clock) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    keep = await shares.create("rec-1", "shop", clock.now + 3600)
    drop = await shares.create("rec-1", "shop", clock.now + 3600)
    revoked = await shares.revoke(drop.id)
    assert revoked is not None and revoked.revoked_at == clock.now
    assert await shares.resolve(drop.token(shares.key)) is ShareRefusal.REVOKED
    assert isinstance(await shares.resolve(keep.token(shares.key)), Share)
    assert await shares.revoke("0" * 32) is None
    listed = await shares.of_recording("rec-1")
    assert [(s.id, s.revoked_at is not None) for s in listed] == [(keep.id, False), (drop.id, True)]
    await shares.close()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # signature changed
        lambda t: t.split(".")[0],  # no signature
        lambda t: "f" * 32 + "." + t.split(".")[1],  # another id, same signature
        lambda t: "",
        lambda t: "../../etc/passwd",
    ],
)
async def test_forged_tokens_are_unknown(tmp_path: Path, clock: Clock, mangle: object) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    share = await shares.create("rec-1", "shop", clock.now + 3600)
    assert await shares.resolve(mangle(share.token(shares.key))) is ShareRefusal.UNKNOWN  # type: ignore[operator]
    await shares.close()


async def test_editing_the_database_cannot_extend_or_redirect_a_link(
    tmp_path: Path, clock: Clock
) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    share = await shares.create("rec-1", "shop", clock.now + 60)
    token = share.token(shares.key)
    await shares.close()
    db = sqlite3.connect(tmp_path / "shares.sqlite3")
    db.execute("UPDATE shares SET expires_at = expires_at + 1e9, recording_id = 'rec-2'")
    db.commit()
    db.close()
    shares = await ShareStore.open(tmp_path, clock=clock)
    assert await shares.resolve(token) is ShareRefusal.UNKNOWN
    await shares.close()


async def test_the_key_survives_restarts_and_is_private(tmp_path: Path, clock: Clock) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    share = await shares.create("rec-1", "shop", clock.now + 3600)
    key = shares.key
    await shares.close()
    assert (tmp_path / "share.key").stat().st_mode & 0o777 == 0o600
    again = await ShareStore.open(tmp_path, clock=clock)
    assert again.key == key
    assert isinstance(await again.resolve(share.token(key)), Share)
    await again.close()


async def test_expired_rows_are_forgotten(tmp_path: Path, clock: Clock) -> None:
    shares = await ShareStore.open(tmp_path, clock=clock)
    old = await shares.create("rec-1", "shop", clock.now + 10)
    new = await shares.create("rec-1", "shop", clock.now + 1000)
    assert await shares.forget_expired(clock.now + 100) == 1
    assert [s.id for s in await shares.of_recording("rec-1")] == [new.id]
    assert await shares.resolve(old.token(shares.key)) is ShareRefusal.UNKNOWN
    await shares.close()
