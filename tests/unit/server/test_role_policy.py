"""The permission table against the product's role model, written here by
hand from the roles issue (admin: everything; operator: devices and report
triage, nothing that changes trust, admission or releases; auditor: reads
everything, the audit log included, and changes nothing).  The route walk
(tests/functional/console/test_route_walk.py) proves the app does what the
table says; this proves the table says what the roles mean: a wrong row
fails here, since the expectation is not read from the table."""

from server.console.permissions import TABLE

ALL = {"admin", "operator", "auditor"}

# who may use each endpoint that needs a user: stated independently of TABLE
INTENDED = {
    ("session", "console.logout"): ALL,
    ("session", "console.overview"): ALL,
    ("session", "console.devices"): ALL,
    ("session", "console.device"): ALL,
    ("session", "console.reports"): ALL,
    ("session", "console.report"): ALL,
    ("session", "console.audit_log"): {"admin", "auditor"},
    ("session", "console.device_action"): {"admin"},  # accept, reject, decommission: admission
    ("session", "console.report_action"): {"admin", "operator"},  # triage
    # repositories and imports: what the plant trusts; the operator's role is devices and reports
    ("session", "console.repositories"): {"admin", "auditor"},
    ("session", "console.imports"): {"admin", "auditor"},
    ("session", "console.import_job"): {"admin", "auditor"},
    ("session", "console.import_job_progress"): {"admin", "auditor"},
    ("session", "console.import_upload"): {"admin"},  # importing changes what devices are offered
    ("session", "console.trust_index"): {"admin", "auditor"},  # the security officer's page first
    ("session", "console.trust"): {"admin", "auditor"},
    ("session", "console.trust_raw"): {"admin", "auditor"},
    ("session", "console.releases"): ALL,  # an operator sees what devices are offered
    ("session", "console.release_approve"): {"admin"},  # releases are the admin's
    ("session", "console.release_withdraw"): {"admin"},
    ("session", "console.users_page"): {"admin", "auditor"},
    ("session", "console.exports"): {"admin", "auditor"},
    ("session", "console.export_make"): {"admin"},  # exports are the admin's
    ("session", "console.export_file"): {"admin"},  # the file carries the plant's data off the appliance
    ("session", "console.user_add"): {"admin"},  # users are the admin's
    ("session", "console.user_action"): {"admin"},
    ("session", "console.rollouts"): ALL,  # reading a rollout changes nothing
    ("session", "console.rollout"): ALL,
    ("session", "console.rollout_step"): {"admin"},  # pause, resume, advance, abort: releases are the admin's
    ("session", "console.alerts"): ALL,  # what needs attention: everyone on shift reads it
    ("basic", "devices.admin_decision"): {"admin"},
    ("basic", "admin_api.list_devices"): ALL,
    ("basic", "admin_api.list_audit"): {"admin", "auditor"},
    ("basic", "admin_api.list_all_users"): {"admin", "auditor"},
    ("basic", "rollouts_api.list_rollouts"): ALL,  # reading a rollout changes nothing
    ("basic", "rollouts_api.show_rollout"): ALL,
    ("basic", "rollouts_api.create_rollout"): {"admin"},  # releases are the admin's
    ("basic", "rollouts_api.rollout_step"): {"admin"},
    ("basic", "devices.admin_device_history"): ALL,  # a device's update history: a read
    # when devices get firmware: rollout policy is the admin's; reading it is everyone's
    ("basic", "delivery_api.list_windows"): ALL,
    ("basic", "delivery_api.add_window"): {"admin"},
    ("basic", "delivery_api.remove_window"): {"admin"},
    ("basic", "delivery_api.list_caps"): ALL,
    ("basic", "delivery_api.set_cap"): {"admin"},
    ("basic", "delivery_api.clear_cap"): {"admin"},
    ("basic", "alerts_api.alerts"): ALL,  # what needs attention: everyone on shift reads it
    ("basic", "admin_api.list_repositories"): {"admin", "auditor"},
    ("basic", "admin_api.list_imports"): {"admin", "auditor"},
    ("basic", "admin_api.show_import_job"): {"admin", "auditor"},
    ("basic", "admin_api.upload_import"): {"admin"},
    ("basic", "admin_api.show_trust"): {"admin", "auditor"},
    ("basic", "admin_api.list_all_releases"): ALL,
    ("basic", "admin_api.approve_release"): {"admin"},
    ("basic", "admin_api.withdraw_release"): {"admin"},
    ("basic", "admin_api.add_user"): {"admin"},
    ("basic", "admin_api.list_exports"): {"admin", "auditor"},
    ("basic", "admin_api.show_device"): ALL,
    ("basic", "admin_api.list_all_reports"): ALL,
    ("basic", "admin_api.show_report"): ALL,
    ("basic", "admin_api.triage_report"): {"admin", "operator"},  # triage, as on the console
    ("basic", "admin_api.make_export"): {"admin"},
    ("basic", "admin_api.download_export"): {"admin"},
    ("basic", "admin_api.change_user"): {"admin"},
}

# no user at all: TUF files, the device API (its own token), the QR form (its key), liveness, the login form
PUBLIC = {"repositories.metadata", "repositories.targets", "health.healthz", "metrics.metrics", "devices.enroll",
          "devices.checkin", "devices.updates", "reports_api.file_report", "devices.openapi",
          "report_form.show_form", "report_form.submit", "console.static", "console.index", "console.login"}


def test_every_row_grants_what_the_roles_mean():
    stated = {(a.kind, endpoint): set(a.roles) for endpoint, a in TABLE.items() if a.kind != "public"}
    assert stated == INTENDED


def test_only_the_intended_endpoints_are_public():
    assert {endpoint for endpoint, a in TABLE.items() if a.kind == "public"} == PUBLIC

