"""Rows of the device tables (migration 0002).  They never leave ``server``:
the services turn them into the dataclasses in ``server.devices.records``."""

from peewee import AutoField, BooleanField, ForeignKeyField, IntegerField, TextField

from server.models import BaseModel


class Device(BaseModel):
    id = AutoField()
    device_id = TextField(unique=True)
    hardware = TextField()
    firmware = TextField()
    state = TextField()
    state_reason = TextField(null=True)
    state_changed_at = TextField()
    state_changed_by = TextField()
    token_hash = TextField(null=True, unique=True)
    token_issued_at = TextField(null=True)
    enrolled_at = TextField()
    last_enroll_at = TextField()
    last_seen = IntegerField(null=True)  # unix seconds
    last_address = TextField(null=True)
    checkins = IntegerField(default=0)
    metrics = TextField(default="{}")  # JSON
    health = TextField(default="[]")  # JSON list
    reboots = TextField(default="[]")  # JSON list of unix seconds
    update_status = TextField(null=True)  # JSON

    class Meta:
        table_name = "device"


class DeviceKey(BaseModel):
    id = AutoField()
    device = ForeignKeyField(Device, column_name="device", backref="keys", on_delete="CASCADE")
    public_key = TextField()
    state = TextField()
    created_at = TextField()
    decided_at = TextField(null=True)
    decided_by = TextField(null=True)

    class Meta:
        table_name = "device_key"


class EnrollmentNonce(BaseModel):
    public_key = TextField()
    nonce = TextField()
    seen_at = IntegerField()

    class Meta:
        table_name = "enrollment_nonce"
        primary_key = False


class AutoAcceptRule(BaseModel):
    id = AutoField()
    hardware = TextField()
    token_sha256 = TextField()
    note = TextField(default="")
    created_at = TextField()
    created_by = TextField()

    class Meta:
        table_name = "auto_accept_rule"


class DeviceTag(BaseModel):
    device = ForeignKeyField(Device, column_name="device", backref="tags", on_delete="CASCADE")
    tag = TextField()

    class Meta:
        table_name = "device_tag"
        primary_key = False


class MetricSample(BaseModel):
    id = AutoField()
    device = ForeignKeyField(Device, column_name="device", on_delete="CASCADE")
    resolution = IntegerField()  # seconds; 0: one check-in
    ts = IntegerField()  # unix seconds
    data = TextField()  # JSON

    class Meta:
        table_name = "metric_sample"


class FirmwareRelease(BaseModel):
    id = AutoField()
    repository = TextField()
    target_path = TextField()
    version = TextField()
    target_hardware = TextField()  # JSON list
    length = IntegerField()
    sha256 = TextField(null=True)
    hardware = TextField(null=True)
    group_tag = TextField(null=True)
    allow_downgrade = BooleanField(default=False)
    approved_at = TextField()
    approved_by = TextField()
    withdrawn_at = TextField(null=True)
    withdrawn_by = TextField(null=True)

    class Meta:
        table_name = "firmware_release"


class UpdateReport(BaseModel):
    id = AutoField()
    device = ForeignKeyField(Device, column_name="device", backref="update_reports", on_delete="CASCADE")
    report_id = TextField()
    release = ForeignKeyField(FirmwareRelease, column_name="release_id")
    step = TextField()
    reason = TextField(null=True)
    at = TextField()
    received_at = TextField()

    class Meta:
        table_name = "update_report"


class DeviceMaintenance(BaseModel):
    id = AutoField()
    claimed_at = IntegerField(default=0)
    finished_at = IntegerField(default=0)
    summary = TextField(default="{}")

    class Meta:
        table_name = "device_maintenance"
