"""The long-running service: `reverie serve` (HTTP API, job scheduler, metrics, systemd
notify), the MCP server, and the Python client agents and `reverie` commands use."""
