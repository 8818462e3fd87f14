"""`serve_forever`: start, freeze what start-up made, stop on SIGTERM."""

from __future__ import annotations

import asyncio
import gc
import os
import signal

from gateway.app import Listening, serve_forever


class Node:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.stopped = False

    async def start(self) -> Listening:
        self.started.set()
        return Listening(edge=("127.0.0.1", 1), admin=("127.0.0.1", 2))

    def announce(self, listening: Listening) -> list[str]:
        return []

    async def stop(self) -> None:
        self.stopped = True


async def test_startup_objects_are_frozen_and_sigterm_stops() -> None:
    gc.unfreeze()
    node = Node()
    serving = asyncio.create_task(serve_forever(node, announce=False))
    try:
        await asyncio.wait_for(node.started.wait(), 5)
        for _ in range(100):  # the freeze follows start() within the same task
            if gc.get_freeze_count() > 0:
                break
            await asyncio.sleep(0.01)
        # Full collections then skip everything start-up made (a ~30 ms pause each, measured).
        assert gc.get_freeze_count() > 0
        os.kill(os.getpid(), signal.SIGTERM)
        await asyncio.wait_for(serving, 5)
        assert node.stopped
    finally:
        serving.cancel()
        gc.unfreeze()
