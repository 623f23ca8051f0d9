"""Database rows.  Peewee models never leave the ``server`` package: services
turn them into dataclasses at the boundary."""

from peewee import DatabaseProxy, IntegerField, Model, TextField

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database


class Repository(BaseModel):
    name = TextField(unique=True)
    root_fingerprint = TextField()
    pinned_root_version = IntegerField()
    added_at = TextField()
    added_by = TextField()

    class Meta:
        table_name = "repository"


class ImportRecord(BaseModel):
    started_at = TextField()
    finished_at = TextField(null=True)
    operator = TextField()
    source = TextField()
    bundle_digest = TextField(null=True)
    status = TextField()
    reason = TextField(null=True)
    details = TextField(default="{}")

    class Meta:
        table_name = "import_record"


class User(BaseModel):
    username = TextField(unique=True)
    password_hash = TextField()
    role = TextField(default="admin")
    created_at = TextField()

    class Meta:
        table_name = "user"
