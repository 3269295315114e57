"""A small userspace TCP port forwarder: what tests/nat uses instead of iptables DNAT where the machine has
no iptables (or ``CLUSTERQ_NAT_MODE=forwarder``). It runs inside the cluster's network namespace:

    python forwarder.py LISTEN_HOST:PORT=TARGET_HOST:PORT ...

Each connection accepted on a listening address is joined to a new connection to its target, made from
the listening host's address (so the nodes see clients come from the gateway, as behind a NAT). When
either side closes, both are closed. It prints ``ready`` once every port listens, and runs until killed.
"""

from __future__ import annotations

import asyncio
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def join(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter,
               target: tuple[str, int], source: str) -> None:
    try:
        target_reader, target_writer = await asyncio.open_connection(*target, local_addr=(source, 0))
    except OSError:
        client_writer.close()  # the node is down: the client sees its connection closed at once
        return
    await asyncio.gather(pipe(client_reader, target_writer), pipe(target_reader, client_writer))


async def main(specs: list[str]) -> None:
    for spec in specs:
        listen, _, target = spec.partition("=")
        listen_host, _, listen_port = listen.rpartition(":")
        target_host, _, target_port = target.rpartition(":")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                         target: tuple[str, int] = (target_host, int(target_port)), source: str = listen_host) -> None:
            await join(reader, writer, target, source)

        await asyncio.start_server(handle, listen_host, int(listen_port))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
