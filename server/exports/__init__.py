"""Exports' side in the database: what each export covers (the data sets
read by ``collect``), the record of every export written, and the note of
one in flight (``export_pending``).  ``services`` is the one way to read or
write them; writing the file to USB media is ``appliance/export/``."""
