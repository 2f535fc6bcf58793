"""Tailor's local AWS: an embedded moto server, the template's resources, an in-process Lambda runtime and the `tailor` CLI."""
