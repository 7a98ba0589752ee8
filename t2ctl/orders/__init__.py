"""Orders: intake, their public shape, and (later) their state machine."""
