"""End-to-end tests of pysock.integrations: real servers, real clients."""
