"""Container logs keep when each line came: the index beside the file, and how kubectl's options read it."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from labkit.emulator.node import logfiles


def test_timestamps_print_as_go_prints_rfc3339nano() -> None:
    assert logfiles.timestamp(1700000000_000000000) == "2023-11-14T22:13:20Z"
    assert logfiles.timestamp(1700000000_500000000) == "2023-11-14T22:13:20.5Z"
    assert logfiles.timestamp(1700000000_123456789) == "2023-11-14T22:13:20.123456789Z"


def test_render_filters_by_time_then_tails_then_stamps() -> None:
    entries = [(10_000_000_000, b"a\n"), (20_000_000_000, b"b\n"), (30_000_000_000, b"c\n")]
    assert logfiles.render(entries) == b"a\nb\nc\n"
    assert logfiles.render(entries, since=20.0) == b"b\nc\n"
    assert logfiles.render(entries, tail=1) == b"c\n"
    assert logfiles.render(entries, tail=5) == b"a\nb\nc\n"
    assert logfiles.render(entries, tail=0) == b""
    assert logfiles.render(entries, since=15.0, tail=1, timestamps=True) == b"1970-01-01T00:00:30Z c\n"


def test_each_line_takes_the_time_of_the_first_note_that_covers_it(tmp_path: Path) -> None:
    log = tmp_path / "0.log"

    async def scenario() -> None:
        stamper = logfiles.Stamper(period=3600)  # notes only when asked, to make the order certain
        log.write_bytes(b"zero\n")  # a program quicker than the node's watch
        stamper.watch(log)
        await asyncio.sleep(0.01)
        with log.open("ab") as file:
            file.write(b"first\nsecond ")
            file.flush()
            stamper.sample()
            await asyncio.sleep(0.01)
            file.write(b"half\nthird\n")
        stamper.unwatch(log)  # the last note, as the instance ends
        stamper.close()

    asyncio.run(scenario())
    entries, end = logfiles.read(log)
    assert end == len(log.read_bytes())
    assert [line for _, line in entries] == [b"zero\n", b"first\n", b"second half\n", b"third\n"]
    zero, first, second, third = (stamp for stamp, _ in entries)
    assert zero < first == second < third  # "second half" had started by the first note after the watch
    complete, _ = logfiles.read(log, partial=False)
    assert len(complete) == 4


def test_a_terminals_output_is_noted_as_it_comes(tmp_path: Path) -> None:
    log = tmp_path / "0.log"

    async def scenario() -> None:
        read_end, write_end = os.pipe()
        writer = await logfiles.read_into(read_end, log)
        os.write(write_end, b"$ ls\r\n")
        os.close(write_end)
        await asyncio.wait_for(writer.closed, 5)

    asyncio.run(scenario())
    entries, _ = logfiles.read(log)
    assert [line for _, line in entries] == [b"$ ls\r\n"]
    assert entries[0][0] > 1_700_000_000_000_000_000
