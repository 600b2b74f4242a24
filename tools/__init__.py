"""Developer tools that are no part of the gateway's runtime (not packaged): documentation generators."""
