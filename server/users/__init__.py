"""Users of the console and the admin API: names, roles and password
hashes.  ``services`` is the one way to create a user, check a password or
change one; ``server.auth`` holds the hashing and the HTTP Basic checks."""
