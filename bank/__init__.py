"""A sandbox bank: its own process (clearhouse-bank), gRPC, books in SQLite."""
