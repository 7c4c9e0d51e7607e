"""Drivers: the embedded runner (a local durable log) and the command line."""
