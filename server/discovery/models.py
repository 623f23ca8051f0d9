"""Rows of ``discovered_service`` (migration 0003).  Never leaves the
``server`` package: :mod:`server.discovery.services` returns dataclasses."""

from peewee import AutoField, IntegerField, TextField

from server.models import BaseModel


class DiscoveredServiceRow(BaseModel):
    id = AutoField()
    service_type = TextField()
    instance = TextField()
    host = TextField(default="")
    addresses = TextField(default="[]")  # JSON list
    port = IntegerField(null=True)
    txt = TextField(default="{}")  # JSON object
    device_id = TextField(null=True)
    first_seen = TextField()
    last_seen = TextField()
    gone_since = TextField(null=True)

    class Meta:
        table_name = "discovered_service"
        indexes = ((("service_type", "instance"), True),)
