"""A real WebSocket client (the `websockets` package) for the push tests.

Connects to argv[1]; prints `open`, then `recv <text>` for every message and
`closed <code> <reason>` at the end, or `refused <status> <body>` when the server answers
without upgrading. Every line read from stdin is sent as one text message, except `!stall`,
after which it reads nothing more (a stalled client: once websockets' small queue is full it
stops reading the socket). It sends no pings of its own, so the server's idle timeout sees only
what the test sends.
"""

import asyncio
import sys

import websockets


async def main(url):
    try:
        ws = await websockets.connect(
            url, user_agent_header="queuebridge-tests", ping_interval=None, max_size=2**20
        )
    except websockets.exceptions.InvalidStatus as e:
        body = e.response.body.decode("utf-8", "replace").replace("\n", " ")
        print("refused", e.response.status_code, body, flush=True)
        return
    print("open", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    reading = asyncio.Event()
    reading.set()

    async def pump():
        while line := await reader.readline():
            text = line.decode().rstrip("\n")
            if text == "!stall":
                reading.clear()
            else:
                await ws.send(text)

    task = asyncio.create_task(pump())
    try:
        while True:
            await reading.wait()
            message = await ws.recv()
            if not reading.is_set():
                await asyncio.Event().wait()
            print("recv", message, flush=True)
    except websockets.exceptions.ConnectionClosed:
        pass
    task.cancel()
    print("closed", ws.close_code, ws.close_reason, flush=True)


asyncio.run(main(sys.argv[1]))
