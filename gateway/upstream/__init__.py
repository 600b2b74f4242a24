"""The upstream HTTP client: pooled keep-alive connections, timeouts and error mapping, framework-free."""
