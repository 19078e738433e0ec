"""Lifecycle states shared by the live backends and the simulator, so both tell the same story."""

from __future__ import annotations

import enum


class VMState(enum.IntEnum):
    """A VM worker from launch to termination."""

    PROVISIONING = 0
    BOOTING = 1
    READY = 2
    DRAINING = 3
    TERMINATED = 4


class FunctionState(enum.IntEnum):
    """A serverless function instance: cold start, serving, idle while kept alive, reaped."""

    COLD = 0
    WARM = 1
    IDLE = 2
    REAPED = 3
