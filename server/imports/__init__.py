"""Imports: the record of every bundle imported (accepted, unchanged or
refused) and of publications recovered after a crash.  ``services`` is the
one way to write or read it; the import pipeline itself (media, staging,
verification, publication) is ``appliance/importer.py``."""
