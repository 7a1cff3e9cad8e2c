#!/usr/bin/env python3
"""CPU per audio frame of Zoom's official RTMS SDK next to zoomhost's, on the same stream.

Usage (from anywhere in the repository):

    python3 host/zoomhost/benches/sdk_cpu.py [--streams 1] [--seconds 20] [--unpaced]

1. Installs Zoom's RTMS SDK (PyPI `rtms`, the Python binding of Zoom's C SDK) into
   target/rtms-sdk-venv, as tests/rtms_sdk.rs does (reused when present). Where it cannot
   be installed (it ships for Linux x86-64 and CPython 3.10 to 3.13), prints why and
   exits 0 without figures.
2. Builds the release zoomhost binary when it is missing.
3. Starts the simulator of `zoomhost bench` (`zoomhost bench-sim`, its own process) and
   joins every stream with the SDK in a child process on one `rtms.EventLoop` (the SDK's
   defaults), whose audio callback only counts. The SDK's CPU (user + system, every
   thread, `getrusage`) runs from just before the joins to the last stream's end.
4. Runs `zoomhost bench --count-only` with the same streams, frames and pace (its probe
   plugin then only counts too, without reading the clock per frame), and prints both
   figures.

This script is a development tool: nothing in the zoomhost binary installs packages.
"""

import argparse
import json
import statistics
import os
import subprocess
import sys
import time
from pathlib import Path

SDK = "rtms==1.1.0"
CLIENT_ID = "bench-client-id"
CLIENT_SECRET = "bench-client-secret"


def workspace() -> Path:
    return Path(__file__).resolve().parents[3]


def sdk_python(ws: Path):
    """The venv's python with the SDK importable, or (None, why)."""
    if not (sys.platform.startswith("linux") and os.uname().machine == "x86_64"):
        return None, "Zoom's RTMS SDK for Python ships for Linux x86-64 only"
    venv = ws / "target" / "rtms-sdk-venv"
    python = venv / "bin" / "python"

    def has_sdk():
        return python.exists() and subprocess.run(
            [str(python), "-c", "import rtms"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        ).returncode == 0

    if has_sdk():
        return python, None
    steps = [
        [sys.executable, "-m", "venv", str(venv)],
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", SDK],
    ]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True)
        if done.returncode != 0:
            return None, f"`{' '.join(step)}` failed: {(done.stdout + done.stderr).strip()}"
    if not has_sdk():
        return None, f"{SDK} installed into {venv} but `import rtms` fails"
    return python, None


def zoomhost_binary(ws: Path) -> Path:
    exe = ws / "target" / "release" / "zoomhost"
    if not exe.exists():
        subprocess.run(["cargo", "build", "--release", "-p", "zoomhost"], cwd=ws, check=True)
    return exe


# The SDK side, run by the venv's python (`--client`).
def client_main(config_path: str) -> None:
    import resource
    import threading

    import rtms

    with open(config_path, encoding="utf-8") as f:
        config = json.load(f)
    frames = [0]
    left = [0]
    done = threading.Event()
    streams = config["streams"]

    def on_audio(data, size, timestamp, metadata):
        frames[0] += 1

    def on_leave(reason):
        left[0] += 1
        if left[0] >= streams:
            done.set()

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    loop = rtms.EventLoop()
    cpu0, t0 = cpu(), time.monotonic()
    for i in range(streams):
        client = rtms.Client()
        client.on_audio_data(on_audio)
        client.on_leave(on_leave)
        loop.add(client)
        client.join(
            meeting_uuid=f"bench-meeting-{i}==",
            rtms_stream_id=f"bench-{i:05}",
            server_urls=config["signaling_url"],
            client=CLIENT_ID,
            secret=CLIENT_SECRET,
        )
    threading.Thread(target=loop.run, daemon=True).start()
    done.wait(timeout=config["limit_s"])
    used, wall = cpu() - cpu0, time.monotonic() - t0
    print(json.dumps({"frames": frames[0], "cpu_s": used, "wall_s": wall, "left": left[0]}))
    sys.stdout.flush()
    # The SDK's threads do not always wind down cleanly at interpreter exit.
    os._exit(0)


def run_sdk(python: Path, exe: Path, ws: Path, args) -> dict:
    frames = args.seconds * 50
    sim_cmd = [str(exe), "bench-sim", "--streams", str(args.streams), "--frames", str(frames)]
    if args.unpaced:
        sim_cmd.append("--unpaced")
    sim = subprocess.Popen(sim_cmd, stdout=subprocess.PIPE, text=True)
    try:
        hello = json.loads(sim.stdout.readline())
        run_dir = ws / "target" / "rtms-sdk-runs" / "bench"
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        config = run_dir / "bench.json"
        config.write_text(json.dumps({
            "signaling_url": hello["signaling_url"],
            "streams": args.streams,
            "limit_s": args.seconds + 120,
        }))
        out = subprocess.run(
            [str(python), str(Path(__file__).resolve()), "--client", str(config)],
            cwd=run_dir,
            env={**os.environ, "ZM_RTMS_LOG_LEVEL": "warn"},
            capture_output=True,
            text=True,
            timeout=args.seconds + 180,
        )
        lines = [l for l in out.stdout.splitlines() if l.startswith("{")]
        if not lines:
            raise RuntimeError(f"the SDK client printed nothing: {out.stderr.strip()[-2000:]}")
        result = json.loads(lines[-1])
        bye = sim.stdout.readline()
        result["sent"] = json.loads(bye)["sent"] if bye.strip() else None
        return result
    finally:
        sim.kill()
        sim.wait()


def run_zoomhost(exe: Path, ws: Path, args) -> dict:
    # The probe only counts, as the SDK's callback does (no clock read per frame).
    cmd = [str(exe), "bench", "--streams", str(args.streams), "--seconds", str(args.seconds), "--count-only"]
    if args.unpaced:
        cmd.append("--unpaced")
    out = subprocess.run(cmd, cwd=ws, capture_output=True, text=True, env={**os.environ, "RUST_LOG": "warn"})
    figures = {}
    for line in out.stdout.splitlines():
        words = line.split()
        if line.startswith("host CPU") and "us" in words:
            figures["cpu_s"] = float(words[2])
            figures["us_per_frame"] = float(words[words.index("us") - 1])
        if line.startswith("frames ") and "received" in words:
            figures["frames"] = int(words[words.index("received") + 1])
            figures["sent"] = words[words.index("sent") + 1]
    if "us_per_frame" not in figures:
        raise RuntimeError(f"zoomhost bench printed no CPU figure:\n{out.stdout}\n{out.stderr[-2000:]}")
    return figures


def main() -> int:
    if len(sys.argv) == 3 and sys.argv[1] == "--client":
        client_main(sys.argv[2])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=1)
    parser.add_argument("--seconds", type=int, default=20, help="seconds of audio per stream")
    parser.add_argument("--unpaced", action="store_true", help="frames as fast as the sockets take them")
    parser.add_argument("--runs", type=int, default=1, help="repeat both sides this many times")
    args = parser.parse_args()
    ws = workspace()
    python, why = sdk_python(ws)
    if python is None:
        print(f"SKIPPED: Zoom's RTMS SDK is unavailable here ({why}); no side-by-side figures.")
        return 0
    exe = zoomhost_binary(ws)
    pace = "unpaced" if args.unpaced else "real-time"
    print(f"{args.streams} stream(s) x {args.seconds * 50} frames of 20 ms L16 audio, {pace}, "
          "from the zoomhost simulator in its own process")
    figures = []
    for run in range(args.runs):
        sdk = run_sdk(python, exe, ws, args)
        sdk_us = sdk["cpu_s"] / max(sdk["frames"], 1) * 1e6
        host = run_zoomhost(exe, ws, args)
        figures.append((sdk_us, host["us_per_frame"], sdk_us / max(host["us_per_frame"], 1e-9)))
        print(f"run {run + 1}: Zoom's RTMS SDK ({SDK}, Python callback) "
              f"{sdk_us:.1f} us/frame ({sdk['frames']} of {sdk['sent']} frames, {sdk['cpu_s']:.3f} s CPU) | "
              f"zoomhost (WASM plugin) {host['us_per_frame']:.1f} us/frame "
              f"({host['frames']} of {host['sent']} frames, {host['cpu_s']:.3f} s CPU) | "
              f"ratio {sdk_us / max(host['us_per_frame'], 1e-9):.1f}x")
    if len(figures) > 1:
        sdk_all, host_all, ratios = (sorted(column) for column in zip(*figures))
        print(f"over {len(figures)} runs (min / median / max): Zoom's RTMS SDK "
              f"{spread(sdk_all, '.1f')} us/frame | zoomhost {spread(host_all, '.1f')} us/frame | "
              f"ratio {spread(ratios, '.1f')}x")
    return 0


def spread(values, fmt):
    """`min / median / max` of sorted `values`, each formatted with `fmt`."""
    return " / ".join(format(v, fmt) for v in (values[0], statistics.median(values), values[-1]))


if __name__ == "__main__":
    sys.exit(main())
