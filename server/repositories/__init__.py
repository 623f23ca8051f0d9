"""TUF repositories: the published tree, pinning, trust reports, serving."""
