"""Apps built on zCLI's public plugin API, each a plugin a user could have written."""
