"""One command: a stream of generated images through thumbnail -> metadata on a local worker fleet.

    python -m examples.thumbnails.demo [--images 40] [--rate 8] [--corrupt 1]

Starts the embedded engine (its Batch API and SQS on one loopback port), the stream's queues
and fleet, drops generated PPM images into an inbox at ``--rate`` per second (``--corrupt``
of them broken, to show the dead-letter queue), and redraws a live view of queue depth,
workers and throughput until every image is through. Outputs land under
``examples/thumbnails/output/conveyor-data/runs/thumbnails-stream/``.
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import threading
import time
from pathlib import Path

from chalicelib.local.fleet import Fleet
from chalicelib.local.stream import LocalStream
from chalicelib.local.stream_inbox import accept_landed
from chalicelib.local.stream_view import StreamView
from chalicelib.localbatch.engine import Engine
from chalicelib.localbatch.rest import BatchHttpServer

HERE = Path(__file__).resolve().parent
OUTPUT = HERE / "output"


def make_image(path: Path, seed: int, corrupt: bool) -> None:
    rng = random.Random(seed)
    width, height = rng.choice([(128, 96), (160, 120), (192, 128)])
    base = [rng.randrange(256) for _ in range(3)]
    pixels = bytearray()
    for y in range(height):
        for x in range(width):
            pixels += bytes(((base[0] + x) % 256, (base[1] + y) % 256, (base[2] + x * y // 64) % 256))
    data = b"P6\n%d %d\n255\n" % (width, height) + bytes(pixels)
    path.write_bytes(data[: len(data) // 2] if corrupt else data)


def drop_images(inbox: Path, count: int, rate: float, corrupt: int, stop: threading.Event) -> None:
    """Writes each image beside the inbox, then renames it in (a file lands whole)."""
    broken = set(random.Random(7).sample(range(count), min(corrupt, count)))
    for number in range(count):
        if stop.wait(1 / rate):
            return
        staging = inbox.parent / f"image-{number:04d}.ppm"
        make_image(staging, number, number in broken)
        staging.rename(inbox / staging.name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.thumbnails.demo")
    parser.add_argument("--images", type=int, default=40)
    parser.add_argument("--rate", type=float, default=8.0, help="images landing per second")
    parser.add_argument("--corrupt", type=int, default=1, help="how many images are broken (dead-lettered)")
    args = parser.parse_args(argv)
    shutil.rmtree(OUTPUT, ignore_errors=True)  # a fresh stream each time (item keys repeat)
    inbox, data = OUTPUT / "inbox", OUTPUT / "conveyor-data"
    inbox.mkdir(parents=True)
    engine = Engine(data).start()
    server = BatchHttpServer(engine).start()
    stream = LocalStream.open(str(HERE / "pipeline.yaml"), server.url, data)
    fleet = Fleet(stream, grace=5).start()
    stop = threading.Event()
    dropper = threading.Thread(target=drop_images, args=(inbox, args.images, args.rate, args.corrupt, stop),
                               daemon=True)
    dropper.start()
    view, redraw = StreamView(stream, fleet), sys.stdout.isatty()
    print(f"engine on {server.url}; dropping {args.images} images into {inbox}", flush=True)
    try:
        while True:
            accept_landed(inbox, stream)
            frame = view.render()
            print(("\x1b[H\x1b[J" if redraw else "") + frame + ("" if redraw else "\n"), flush=True)
            snap = view.snapshot()
            dead = sum(s["dead_letters"] for s in snap["stages"].values())
            if snap["finished"] + dead >= args.images and not dropper.is_alive():
                break
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        fleet.stop()
        server.stop()
        engine.stop()
    summary(stream)
    stream.close()
    return 0


def summary(stream: LocalStream) -> None:
    final = [r for r in stream.items.list_items(stream.run_id, "metadata", limit=100_000)
             if r.status.value == "SUCCEEDED" and r.arrived_at and r.updated_at]
    latencies = sorted(r.updated_at - r.arrived_at for r in final)  # type: ignore[operator]
    if latencies:
        p50, p99 = latencies[len(latencies) // 2], latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
        print(f"\n{len(final)} images through both stages; arrival to metadata published: p50 {p50} ms, p99 {p99} ms")
    for record in stream.items.list_items(stream.run_id, "thumbnail"):
        if record.status.value == "DEAD_LETTERED":
            print(f"dead-lettered: {record.key}: {record.reason}")
    print(f"outputs: {stream.data_dir / 'runs' / stream.run_id}")


if __name__ == "__main__":
    sys.exit(main())
