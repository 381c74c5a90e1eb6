"""What ``nslookup`` in a client pod answered: the addresses it gave for the name.

busybox's, bind's and labkit's own ``nslookup`` print the DNS server first (``Server:`` and its ``Address:``), then
the answer after ``Name:``; a name nobody answers prints ``** server can't find …`` and no ``Name:`` at all.
"""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"^Address:\s*(\S+)$")


def nslookup_addresses(output: str) -> list[str]:
    """The addresses an ``nslookup`` answer gives for the name (never the DNS server's own); empty when none.

    Args:
        output: what ``nslookup <name>`` printed.
    """
    answer = output.split("Name:", 1)[1] if "Name:" in output else ""
    return [m.group(1) for line in answer.splitlines() if (m := _ADDRESS.match(line.strip()))]
