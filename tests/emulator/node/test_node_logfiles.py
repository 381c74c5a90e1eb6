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


def test_a_pipe_fills_the_file_and_each_line_takes_its_chunks_time(tmp_path: Path) -> None:
    log = tmp_path / "0.log"

    async def scenario() -> list[tuple[int, bytes]]:
        write_end, writer = await logfiles.open_pipe(log)
        os.write(write_end, b"first\nsecond ")
        await asyncio.sleep(0.05)  # two chunks, apart in time, as a program writes them
        os.write(write_end, b"half\nthird\n")
        os.close(write_end)
        await asyncio.wait_for(writer.closed, 5)
        return logfiles.read(log)[0]

    entries = asyncio.run(scenario())
    assert log.read_bytes() == b"first\nsecond half\nthird\n"
    assert [line for _, line in entries] == [b"first\n", b"second half\n", b"third\n"]
    first, second, third = (stamp for stamp, _ in entries)
    assert first == second < third  # "second half" started in the first chunk
    complete, end = logfiles.read(log, partial=False)
    assert end == len(log.read_bytes()) and len(complete) == 3
