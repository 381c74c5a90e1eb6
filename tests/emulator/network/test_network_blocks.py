"""Address blocks: two emulators on one machine never share a 127.X.0.0/16."""

from __future__ import annotations

import subprocess
import sys

import pytest

from labkit.emulator.network.addresses import claim_block
from labkit.errors import EmulatorError


def test_a_claimed_block_is_refused_to_another_claim_until_released() -> None:
    with claim_block() as first:
        others = [claim_block() for _ in range(5)]
        assert first.block not in {other.block for other in others}
        with pytest.raises(EmulatorError, match=rf"127\.{first.block}\.0\.0/16 is held by another emulator"):
            claim_block(first.block)
        for other in others:
            other.release()
        block = first.block
    with claim_block(block) as again:
        assert again.plan.api_server_address(1) == f"127.{block}.1.1"


def test_a_claim_dies_with_its_process() -> None:
    script = ("from labkit.emulator.network.addresses import claim_block\n"
              "print(claim_block().block, flush=True)\n")
    block = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    with claim_block(block) as claim:
        assert claim.block == block
