"""A leader-election contender in its own process, for kill -9 tests.

    python tests/integration/dcs_contender.py KEY VALUE ENDPOINT [ENDPOINT ...]

Prints `LEADER <token>` once elected and `LOST <reason>` if the leadership ends,
then exits; runs until killed otherwise.
"""

from __future__ import annotations

import asyncio
import sys

from spofless.dcs import DCSSettings, EtcdStore, campaign

SETTINGS = DCSSettings(ttl=3, renew_interval=0.5, retry_timeout=0.5, request_timeout=0.25)


async def main(key: str, value: str, endpoints: list[str]) -> None:
    async with EtcdStore(endpoints, SETTINGS) as store:
        leadership = await campaign(store, key, value, SETTINGS)
        print(f"LEADER {leadership.fencing_token}", flush=True)
        await leadership.lost.wait()
        print(f"LOST {leadership.reason}", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3:]))
