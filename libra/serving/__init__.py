"""The serving platform, one driver of the core: API, router, controller, settings, metrics,
backends, provisioners, shared state, the `libra-serve` and `libra-load` commands."""
