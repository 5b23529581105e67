"""Fault-injection tests (RELIABILITY.md F1-F12, F16) with real worker processes: `make test-faults`."""
