"""The seed job in Quix Streams, run by the benchmark in its own virtualenv.

Usage: python quix_job.py BOOTSTRAP TOPIC EVENTS STATE_DIR; prints one JSON line.
Quix Streams pins confluent-kafka < 2.13 and pydantic < 2.14, so it cannot share
fjordgate's environment; the benchmark creates one for it.
"""

import json
import sys
import time
import uuid

from quixstreams import Application


def main() -> None:
    bootstrap, topic_name, total, state_dir = (
        sys.argv[1],
        sys.argv[2],
        int(sys.argv[3]),
        sys.argv[4],
    )
    app = Application(
        broker_address=bootstrap,
        consumer_group=f"quix-bench-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        state_dir=state_dir,
        use_changelog_topics=False,
    )
    topic = app.topic(
        topic_name,
        value_deserializer="json",
        timestamp_extractor=lambda value, headers, ts, ttype: value["event_time"],
    )
    seen = {"in": 0, "out": 0, "t0": 0.0, "t1": 0.0}

    def count_in(_value: object) -> None:
        if seen["in"] == 0:
            seen["t0"] = time.perf_counter()
        seen["in"] += 1
        if seen["in"] == total:
            seen["t1"] = time.perf_counter()
            app.stop()

    def count_out(_value: object) -> None:
        seen["out"] += 1

    sdf = app.dataframe(topic)
    sdf = sdf.update(count_in)
    sdf = sdf.apply(lambda v: v["speed"]).tumbling_window(60_000, grace_ms=5_000).max().final()
    sdf = sdf.update(count_out)
    app.run()
    seconds = (seen["t1"] or time.perf_counter()) - seen["t0"]
    print(json.dumps({"events": seen["in"], "results": seen["out"], "seconds": seconds}))


if __name__ == "__main__":
    main()
