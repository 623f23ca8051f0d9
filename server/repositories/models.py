"""Rows of the repositories domain: one per pinned vendor repository."""

from peewee import AutoField, IntegerField, TextField

from server.models import BaseModel


class Repository(BaseModel):
    id = AutoField()
    name = TextField(unique=True)
    root_fingerprint = TextField()
    pinned_root_version = IntegerField()
    added_at = TextField()
    added_by = TextField()

    class Meta:
        table_name = "repository"
