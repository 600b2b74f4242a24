"""The `make run` demo: the test OpenID provider, a demo upstream and tokengate, started together."""
