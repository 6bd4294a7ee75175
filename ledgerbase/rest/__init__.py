"""The PostgREST-compatible data API: parse, plan, compile, execute, respond."""
