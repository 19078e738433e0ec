"""Scaling policies, by name: the same names in `libra-sim --policies` and in the live config."""

from __future__ import annotations

from typing import Any

from libra.core.policies.base import Decision, Observation, Policy
from libra.core.policies.libra import Libra
from libra.core.policies.libra_forecast import LibraForecast
from libra.core.policies.libra_paper import LibraPaper
from libra.core.policies.mark import Mark
from libra.core.policies.serverless import ServerlessOnly
from libra.core.policies.spock import Spock
from libra.core.policies.vm_reactive import VMReactive
from libra.core.policies.vm_static import VMStatic

POLICIES: dict[str, type[Any]] = {
    cls.name: cls
    for cls in (VMStatic, VMReactive, ServerlessOnly, Spock, Mark, LibraPaper, Libra,
                LibraForecast)
}


class UnknownPolicyError(ValueError):
    """A policy name that is not in the registry; the message lists the valid ones."""


def policy_class(name: str) -> type[Any]:
    """The policy class registered under `name`."""
    try:
        return POLICIES[name]
    except KeyError:
        valid = ", ".join(POLICIES)
        raise UnknownPolicyError(f"unknown policy {name!r}; valid policies: {valid}") from None


def make_policy(name: str, **params: Any) -> Policy:
    """A fresh policy object (policies hold hysteresis state: one object per run)."""
    try:
        return policy_class(name)(**params)
    except TypeError as exc:
        raise ValueError(f"bad parameters for policy {name!r}: {exc}") from None


__all__ = [
    "POLICIES",
    "Decision",
    "Libra",
    "LibraForecast",
    "LibraPaper",
    "Mark",
    "Observation",
    "Policy",
    "ServerlessOnly",
    "Spock",
    "UnknownPolicyError",
    "VMReactive",
    "VMStatic",
    "make_policy",
    "policy_class",
]
