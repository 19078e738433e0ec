"""One local serverless instance: the Lambda handler in a process, events as JSON lines.

Started by the local serverless pool (`libra.serving.backends.local_pool`). Importing
`handlers.lambda_function` is the INIT phase (the model loads): its time is the instance's real
cold start. Then it prints `LIBRA_INSTANCE_READY init_ms=...` and answers one event per stdin
line with one stdout line, one at a time, as a Lambda instance does.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from libra.serving.children import INSTANCE_READY_LINE, die_with_parent
from libra.serving.logs import RateLimitedLog, setup_logging

log = logging.getLogger(__name__)


def main() -> None:
    started = time.perf_counter()
    die_with_parent()  # a killed server must not leave instances behind
    # stderr only: stdout is the protocol (the parent passes its level and format down)
    setup_logging(os.environ.get("LIBRA_LOG_LEVEL", "info"),
                  "json" if os.environ.get("LIBRA_LOG_FORMAT") == "json" else "text")
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the handler prints must not corrupt the protocol
    from handlers import lambda_function

    init_ms = 1000 * (time.perf_counter() - started)
    log.info("serverless instance ready: model %s, init %.1f ms",
             os.environ.get("LIBRA_MODEL_PATH", "(default)"), init_ms)
    failures = RateLimitedLog(log)
    out.write(f"{INSTANCE_READY_LINE} init_ms={init_ms:.1f}\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            answer = lambda_function.handler(event, None)
        except Exception as exc:  # a function error, reported as Lambda reports one
            failures.failure(type(exc).__name__, "the handler failed on an event")
            answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
