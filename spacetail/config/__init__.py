"""Settings and what they mean: every setting once, the checked Config, the credentials and the
scope of a phase, host:port and proxy URLs as they are parsed and printed."""
