"""The sweep-kept deadlines of the hot path (gateway/edge/deadline.py)."""

from __future__ import annotations

import asyncio
import gc
import weakref

import pytest
import uvloop

from gateway.edge.deadline import RESOLUTION, Deadline, within


async def _until(condition: object, within_s: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + within_s
    while not condition():  # type: ignore[operator]
        assert loop.time() < end, "condition never came true"
        await asyncio.sleep(0.005)


async def test_a_late_operation_raises_timeout_and_the_task_goes_on() -> None:
    with pytest.raises(TimeoutError), within(0.05):
        await asyncio.sleep(10)
    # No cancellation is left pending on the task.
    await asyncio.sleep(RESOLUTION * 3)
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_an_operation_in_time_is_left_alone_after_the_block() -> None:
    with within(RESOLUTION):
        await asyncio.sleep(0)
    # Past the deadline, outside the block: nothing fires.
    await asyncio.sleep(RESOLUTION * 4)


async def test_none_means_no_deadline() -> None:
    with within(None):
        await asyncio.sleep(RESOLUTION * 3)


async def test_a_cancel_from_outside_stays_a_cancel() -> None:
    entered = asyncio.Event()

    async def guarded() -> None:
        with within(30):
            entered.set()
            await asyncio.sleep(30)

    task = asyncio.create_task(guarded())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.mark.parametrize("also_cancelled", [False, True])
async def test_a_cancel_from_outside_as_the_deadline_fires_stays_a_cancel(
    also_cancelled: bool,
) -> None:
    deadlines: list[Deadline] = []

    async def guarded() -> None:
        deadline = within(30)
        assert isinstance(deadline, Deadline)
        deadlines.append(deadline)
        with deadline:
            await asyncio.sleep(30)

    task = asyncio.create_task(guarded())
    await _until(lambda: deadlines)
    deadlines[0].fire()  # what the sweep does
    if also_cancelled:
        task.cancel()  # before the task ran again: both cancellations are pending
    with pytest.raises(asyncio.CancelledError if also_cancelled else TimeoutError):
        await task


async def test_nested_deadlines_each_raise_for_their_own_block() -> None:
    with within(30):
        with pytest.raises(TimeoutError), within(0.05):
            await asyncio.sleep(10)
        await asyncio.sleep(0)  # the outer block goes on

    # The inner one did not fire: the outer's timeout comes out.
    with pytest.raises(TimeoutError), within(0.05), within(30):
        await asyncio.sleep(10)


async def test_the_sweep_stops_when_nothing_is_watched() -> None:
    deadline = within(30)
    assert isinstance(deadline, Deadline)
    watch = deadline._watch
    with deadline:
        await asyncio.sleep(RESOLUTION * 1.5)
        assert watch._sweeping
    await _until(lambda: not watch._sweeping)
    assert not watch.active


def test_each_event_loop_has_its_own_sweep() -> None:
    async def times_out() -> bool:
        try:
            with within(0.02):
                await asyncio.sleep(10)
        except TimeoutError:
            return True
        return False

    assert asyncio.run(times_out())
    assert uvloop.run(times_out())
    assert asyncio.run(times_out())


async def test_outside_a_task_it_says_so() -> None:
    deadline = within(1)
    assert isinstance(deadline, Deadline)
    errors: list[BaseException] = []
    done = asyncio.Event()

    def callback() -> None:  # runs on the loop, but in no task
        try:
            deadline.__enter__()
        except RuntimeError as exc:
            errors.append(exc)
        done.set()

    asyncio.get_running_loop().call_soon(callback)
    await done.wait()
    assert len(errors) == 1 and "inside a task" in str(errors[0])


def test_a_closed_loop_is_not_kept_alive_by_a_deadline_still_pending() -> None:
    loop = asyncio.new_event_loop()

    async def stuck() -> None:
        with within(100):
            await asyncio.sleep(100)

    task = loop.create_task(stuck())
    loop.run_until_complete(asyncio.sleep(0.01))  # the task is inside its deadline
    assert not task.done()
    closed = weakref.ref(loop)
    loop.close()
    task._log_destroy_pending = False  # type: ignore[attr-defined]
    del loop, task
    gc.collect()
    assert closed() is None
