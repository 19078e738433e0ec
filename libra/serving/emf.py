"""CloudWatch embedded metric format (EMF): the router's metrics as log lines CloudWatch turns
into metrics, so the alarms in infra/ have data without an agent or a sidecar.

Enabled where the task sets `AWS_EMF_NAMESPACE` (infra/terraform/router.tf does, with
`AWS_EMF_SERVICE_NAME`), as the `aws-embedded-metrics` library reads them; elsewhere a no-op.
The line's shape is the contract infra/README.md ("Metrics") documents and its test checks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import TextIO


class EmfReporter:
    """Prints one EMF document per call (see module docs)."""

    def __init__(self, namespace: str | None, service_name: str,
                 out: TextIO | None = None, clock: Callable[[], float] = time.time) -> None:
        self.namespace = namespace
        self.service_name = service_name
        self.out = out
        self.clock = clock

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> EmfReporter:
        return cls(environ.get("AWS_EMF_NAMESPACE") or None,
                   environ.get("AWS_EMF_SERVICE_NAME", "libra-router"))

    @property
    def enabled(self) -> bool:
        return self.namespace is not None

    def put(self, metrics: Mapping[str, float], unit: str = "Count") -> None:
        """One line with `metrics` under the ServiceName dimension (nothing when disabled)."""
        if self.namespace is None or not metrics:
            return
        document = {
            "_aws": {"Timestamp": int(self.clock() * 1000), "CloudWatchMetrics": [{
                "Namespace": self.namespace, "Dimensions": [["ServiceName"]],
                "Metrics": [{"Name": name, "Unit": unit} for name in metrics]}]},
            "ServiceName": self.service_name, **metrics}
        out = self.out or sys.stdout
        out.write(json.dumps(document) + "\n")
        out.flush()
