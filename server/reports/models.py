"""Rows of the report tables (migration 0004).  They never leave ``server``:
the services turn them into the dataclasses in ``server.reports.records``."""

from peewee import AutoField, ForeignKeyField, IntegerField, TextField

from server.devices.models import Device
from server.models import BaseModel


class Report(BaseModel):
    id = AutoField()
    device = ForeignKeyField(Device, column_name="device", backref="reports", on_delete="CASCADE")
    source = TextField()  # device | operator
    report_id = TextField(null=True)
    kind = TextField()
    severity = TextField()
    message = TextField()
    firmware = TextField(null=True)
    occurred_at = TextField(null=True)
    reporter = TextField(null=True)
    snapshot = TextField(default="{}")  # JSON
    attachment_bytes = IntegerField(default=0)
    status = TextField(default="new")
    status_changed_at = TextField(null=True)
    status_changed_by = TextField(null=True)
    created_at = TextField()
    created_ts = IntegerField()

    class Meta:
        table_name = "report"


class ReportAttachment(BaseModel):
    id = AutoField()
    report = ForeignKeyField(Report, column_name="report", backref="attachments", on_delete="CASCADE")
    name = TextField()
    size = IntegerField()
    sha256 = TextField()

    class Meta:
        table_name = "report_attachment"


class ReportNote(BaseModel):
    id = AutoField()
    report = ForeignKeyField(Report, column_name="report", backref="notes", on_delete="CASCADE")
    action = TextField()
    text = TextField(default="")
    author = TextField()
    at = TextField()

    class Meta:
        table_name = "report_note"


class DeviceLabel(BaseModel):
    device = ForeignKeyField(Device, column_name="device", primary_key=True, on_delete="CASCADE")
    key_hash = TextField()
    created_at = TextField()
    created_by = TextField()

    class Meta:
        table_name = "device_label"
