"""Every figure the simulator uses: the platform (`libra.core.platform`, shared with the live
platform) plus the replay's own settings, with units in the names and where each default comes
from (prices and their sources: `libra.core.platform`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt, model_validator

from libra.core.platform import (
    SLA_TOLERANCE_S,
    Platform,
    ServerlessConfig,
    VMConfig,
)

__all__ = ["SLA_TOLERANCE_S", "ServerlessConfig", "SimConfig", "VMConfig"]


class SimConfig(Platform):
    """The whole simulated setting: the platform plus how the replay starts and samples."""

    history_s: PositiveInt = Field(900, description="per-second counts kept for policies")
    initial_vms: int | Literal["auto"] = Field(
        "auto",
        description="VMs ready at t=0 ('auto': enough for the first minute's mean rate, i.e. a "
        "fleet already running when the replay starts; vm-static starts with its own fleet)",
    )
    initial_vms_booting: bool = Field(
        False,
        description="the initial fleet is launched at t=0 and boots for vm.boot_s instead of "
        "being ready (LIBRA's simulator: 10 VMs launched at t=1, ready at t=101)",
    )
    static_utilisation: float = Field(
        1.0, gt=0, le=1, description="vm-static sizes for peak per-second rate at this utilisation"
    )
    seed: int = 0

    @model_validator(mode="after")
    def _check(self) -> SimConfig:
        if isinstance(self.initial_vms, int) and self.initial_vms < 0:
            raise ValueError(f"initial_vms ({self.initial_vms}) must not be negative")
        return self
