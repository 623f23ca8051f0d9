"""Rows of the imports domain: one per import tried."""

from peewee import AutoField, TextField

from server.models import BaseModel


class ImportRecord(BaseModel):
    id = AutoField()
    started_at = TextField()
    finished_at = TextField(null=True)
    operator = TextField()
    source = TextField()
    bundle_digest = TextField(null=True)
    status = TextField()  # accepted | unchanged | refused
    reason = TextField(null=True)
    details = TextField(default="{}")  # JSON: names, repositories (changes), publication token, recovered

    class Meta:
        table_name = "import_record"
