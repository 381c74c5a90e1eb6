"""The emulator's HTTP API layer: request bodies, handlers and the wire formats kubectl speaks."""
