"""The server's database: tables (``models``), the engine and migrations (``engine``)."""
