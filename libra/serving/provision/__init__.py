"""Provisioners: turn a policy's target VM count into running workers (local processes or EC2)."""
