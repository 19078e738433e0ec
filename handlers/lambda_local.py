"""One local serverless instance: the Lambda handler in a process, events as JSON lines.

Started by the local serverless pool (`libra.serving.backends.local_pool`). Importing
`handlers.lambda_function` is the INIT phase (the model loads): its time is the instance's real
cold start. Then it prints `LIBRA_INSTANCE_READY init_ms=...` and answers one event per stdin
line with one stdout line, one at a time, as a Lambda instance does.
"""

from __future__ import annotations

import json
import sys
import time

from libra.serving.children import INSTANCE_READY_LINE, die_with_parent


def main() -> None:
    started = time.perf_counter()
    die_with_parent()  # a killed server must not leave instances behind
    out = sys.stdout
    sys.stdout = sys.stderr  # anything the handler prints must not corrupt the protocol
    from handlers import lambda_function

    out.write(f"{INSTANCE_READY_LINE} init_ms={1000 * (time.perf_counter() - started):.1f}\n")
    out.flush()
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            event = json.loads(line)
            answer = lambda_function.handler(event, None)
        except Exception as exc:  # a function error, reported as Lambda reports one
            answer = {"errorType": type(exc).__name__, "errorMessage": str(exc)}
        out.write(json.dumps(answer) + "\n")
        out.flush()


if __name__ == "__main__":
    main()
