"""Dev tooling shared by tests/, bench/ and demo/: loopback ports, one child-process launcher, and the real
peers (the test OpenID provider, private Redis servers). Never imported by gateway/, never by pytest."""
