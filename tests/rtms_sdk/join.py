"""Joins a simulated RTMS stream with Zoom's official RTMS SDK (PyPI `rtms`).

Driven by tests/rtms_sdk.rs. Usage: python join.py CONFIG_JSON

CONFIG_JSON holds: server_urls, id_key (meeting_uuid, webinar_uuid, session_id or
engagement_id), id, rtms_stream_id, client, secret.

Standard output: one JSON object per line.
  {"joined": true}                                   the first join was requested
  {"frame": n, "sha256": hex, "ts": ms, "user_id": id}  every audio frame, in order
  {"media_interrupted": ts}                          EVENT_UPDATE 7 reached the SDK
  {"left": reason}                                   the SDK reported a leave
  {"error": text}                                    something failed in the script
Standard input: one JSON command per line.
  {"cmd": "rejoin", "server_urls": url}   a failover's rtms_started: leave, join anew
  {"cmd": "quit"}                         leave and exit

The C SDK wants alloc, join, poll and release on one OS thread: every client lives on one
rtms.EventLoop, and commands are carried out on that loop's thread between polls. The SDK
writes its own logs into ./logs when that folder exists (the test creates it).
"""

import hashlib
import json
import os
import queue
import sys
import threading

import rtms

OUT_LOCK = threading.Lock()


def emit(obj):
    with OUT_LOCK:
        sys.stdout.write(json.dumps(obj) + "\n")
        sys.stdout.flush()


class Session:
    """The current client and what every client of the run received."""

    def __init__(self, config):
        self.config = config
        self.frames = 0
        self.client = None

    def on_audio(self, data, size, timestamp, metadata):
        payload = bytes(data)[:size]
        emit({
            "frame": self.frames,
            "sha256": hashlib.sha256(payload).hexdigest(),
            "ts": timestamp,
            "user_id": metadata.userId,
        })
        self.frames += 1

    def new_client(self, loop, server_urls):
        client = rtms.Client()
        client.on_audio_data(self.on_audio)
        client.on_media_connection_interrupted(lambda ts: emit({"media_interrupted": ts}))
        client.on_leave(lambda reason: emit({"left": reason}))
        loop.add(client)
        join = {
            self.config["id_key"]: self.config["id"],
            "rtms_stream_id": self.config["rtms_stream_id"],
            "server_urls": server_urls,
            "client": self.config["client"],
            "secret": self.config["secret"],
        }
        client.join(**join)
        self.client = client


class CommandLoop(rtms.EventLoop):
    """An EventLoop that also carries out the test's commands on its own thread."""

    def __init__(self, session, commands):
        super().__init__(poll_interval=0.005, name="rtms-sdk-test")
        self.session = session
        self.commands = commands

    def _poll_all(self):
        while True:
            try:
                command = self.commands.get_nowait()
            except queue.Empty:
                break
            self.run_command(command)
        super()._poll_all()

    def run_command(self, command):
        if command.get("cmd") == "rejoin":
            if self.session.client is not None:
                self.session.client.leave()
            self.session.new_client(self, command["server_urls"])
        elif command.get("cmd") == "quit":
            if self.session.client is not None:
                self.session.client.leave()
            # The SDK's threads do not always wind down cleanly at interpreter exit.
            os._exit(0)


def read_commands(commands):
    for line in sys.stdin:
        line = line.strip()
        if line:
            try:
                commands.put(json.loads(line))
            except json.JSONDecodeError as e:
                emit({"error": f"bad command {line!r}: {e}"})
    # The test went away: leave too.
    commands.put({"cmd": "quit"})


def main():
    with open(sys.argv[1], encoding="utf-8") as f:
        config = json.load(f)
    session = Session(config)
    commands = queue.Queue()
    loop = CommandLoop(session, commands)
    session.new_client(loop, config["server_urls"])
    emit({"joined": True})
    threading.Thread(target=read_commands, args=(commands,), daemon=True).start()
    loop.run()


if __name__ == "__main__":
    try:
        main()
    except Exception as e:  # reported to the test, which fails with it
        emit({"error": f"{type(e).__name__}: {e}"})
        sys.stdout.flush()
        os._exit(1)
