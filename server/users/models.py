"""Rows of the users domain."""

from peewee import AutoField, BooleanField, TextField

from server.models import BaseModel


class User(BaseModel):
    id = AutoField()
    username = TextField(unique=True)
    password_hash = TextField()  # scrypt, see server.auth.hash_password
    role = TextField(default="admin")  # admin | operator | auditor
    created_at = TextField()
    disabled = BooleanField(default=False)  # a disabled user cannot log in; their sessions are gone

    class Meta:
        table_name = "user"
