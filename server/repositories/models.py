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
    history_after = IntegerField(default=0)  # import records up to this id belong to an earlier pin of the name

    class Meta:
        table_name = "repository"
