"""The core both drivers use (the simulator and the live platform): policies, the routing rule,
lifecycle states. Pure: no I/O, no clock, no web framework."""
