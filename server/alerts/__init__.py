"""Alerts: something that needs a person's attention opens an alert, with
a start and, once it is over, an end.  ``services`` opens, closes and lists
them (on a check-in's path only for the device checking in); ``sweep``
finds what no request reports (devices gone silent, metadata about to
expire) in the background of `airlock serve`."""
