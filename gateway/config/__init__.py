"""Configuration: the typed schema and the YAML loader that reports every problem with its path."""

from gateway.config.loader import load_config, parse_config
from gateway.config.schema import GatewayConfig

__all__ = ["GatewayConfig", "load_config", "parse_config"]
