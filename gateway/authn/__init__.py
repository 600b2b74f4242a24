"""Authentication, framework-free (no aiohttp.web): who is calling (bearer token or browser session),
how a login becomes a session, and what the policy decides for them. Takes plain values, never a request.
"""
