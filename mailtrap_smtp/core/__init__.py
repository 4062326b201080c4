"""Use cases that know no adapter: what the CLI (and, next, the HTTP management API) asks the service to do."""
