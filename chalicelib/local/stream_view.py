"""A live view of a local stream: per stage queue depth, dead letters, workers and throughput.

    view = StreamView(stream, fleet)
    print(view.render())          # one frame; call it every second or so
"""

from __future__ import annotations

import collections
import time
from typing import Any

from chalicelib.local.fleet import Fleet
from chalicelib.local.stream import LocalStream

WINDOW_SECONDS = 5.0


class StreamView:
    def __init__(self, stream: LocalStream, fleet: Fleet | None = None) -> None:
        self.stream, self.fleet = stream, fleet
        self.started = time.monotonic()
        self._history: collections.deque[tuple[float, int]] = collections.deque()

    def snapshot(self) -> dict[str, Any]:
        counts = self.stream.items.count_items(self.stream.run_id)
        stages = {}
        for name, queues in self.stream.queues.items():
            depth = self.stream.depth(queues.url)
            workers = self.fleet.workers().get(name, []) if self.fleet else []
            stages[name] = {
                "waiting": depth.get("ApproximateNumberOfMessages", 0),
                "in_flight": depth.get("ApproximateNumberOfMessagesNotVisible", 0),
                "dead_letters": self.stream.dead_letters(name),
                "busy": sum(1 for w in workers if w.state == "busy"),
                "workers": len(workers),
                "done": counts.get(name, {}).get("SUCCEEDED", 0),
            }
        last = [s for s in self.stream.spec.pipeline.stage_names if not self.stream.spec.downstream(s)]
        finished = sum(stages[s]["done"] for s in last)
        now = time.monotonic()
        self._history.append((now, finished))
        while self._history and now - self._history[0][0] > WINDOW_SECONDS:
            self._history.popleft()
        first_time, first_done = self._history[0]
        rate = (finished - first_done) / (now - first_time) if now > first_time else 0.0
        return {"stages": stages, "finished": finished, "rate": rate, "elapsed": now - self.started}

    def render(self) -> str:
        snap = self.snapshot()
        lines = [f"stream {self.stream.spec.name}  {snap['elapsed']:6.1f}s  finished {snap['finished']}  "
                 f"throughput {snap['rate']:.1f} items/s (last {WINDOW_SECONDS:g}s)",
                 f"  {'stage':<14}{'waiting':>8}{'in flight':>10}{'DLQ':>5}{'workers':>9}{'busy':>6}{'done':>7}"]
        for name, s in snap["stages"].items():
            lines.append(f"  {name:<14}{s['waiting']:>8}{s['in_flight']:>10}{s['dead_letters']:>5}"
                         f"{s['workers']:>9}{s['busy']:>6}{s['done']:>7}")
        return "\n".join(lines)
