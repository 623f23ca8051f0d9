"""Plain-text renderings for the terminal, and who is at it.  Names that
came from a bundle are escaped (``ascii``) so that they cannot carry
terminal control codes."""

import getpass
import os

from signing.paths import show


def current_operator() -> str:
    """Who runs this command, for records and the audit log: the user behind
    ``sudo`` if any, else the login user."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def _safe(text) -> str:
    s = str(text)
    return s if s.isprintable() and s.isascii() else show(s)


def render_trust_report(report) -> str:
    r = report.repository
    lines = [
        f"repository {r.name}",
        f"  pinned root: version {r.pinned_root_version}, sha256 {r.root_fingerprint}",
        f"  pinned {r.added_at} by {_safe(r.added_by)}",
        f"  root versions served: {', '.join(str(v) for v in report.root_versions)}",
        "",
        "roles:",
    ]
    for role in report.roles:
        flag = "EXPIRED" if role.days_left < 0 else f"{role.days_left} days left"
        via = f" (delegated by {role.delegator})" if role.delegator not in (None, "root") else ""
        lines.append(f"  {role.name}{via}: version {role.version}, expires {role.expires} ({flag}), "
                     f"threshold {role.threshold} of {len(role.keyids)}")
        if role.paths:
            lines.append(f"    paths: {', '.join(_safe(p) for p in role.paths)}")
        for keyid in role.keyids:
            mark = "signed" if keyid in role.signed_by else "did not sign"
            lines.append(f"    key {keyid[:16]}... {role.keytypes.get(keyid, '?')}  {mark}")
    lines.append("")
    lines.append(f"targets: {len(report.targets)}")
    for t in report.targets:
        custom = t["custom"]
        extra = ""
        if custom:
            hardware = ", ".join(_safe(h) for h in custom.get("hardware", []))
            extra = f"  version {_safe(custom.get('version', '?'))} for {hardware}"
        lines.append(f"  {_safe(t['path'])}  {t['length']} bytes  ({t['role']}){extra}")
    if report.refresh_problem:
        lines.append(f"  devices cannot refresh: {_safe(report.refresh_problem)}; nothing is offered until a "
                     "delivery with newer metadata")
    for role, why in sorted(report.unavailable_roles.items()):
        lines.append(f"  role {_safe(role)} is unavailable: it {_safe(why)}")
    for title, rows in (("unavailable targets (a client's lookup fails)", report.unavailable),
                        ("ignored targets (listed, but no client finds them there)", report.ignored)):
        if rows:
            lines.append(f"{title}: {len(rows)}")
            lines.extend(f"  {_safe(t['path'])}  ({_safe(t['role'])}): {_safe(t['why'])}" for t in rows)
    lines.append("")
    lines.append("imports:")
    if not report.imports:
        lines.append("  none yet")
    for imp in report.imports:
        detail = imp.get("repository") or {}
        line = f"  #{imp['id']} {imp['started_at']} {imp['status']} by {_safe(imp['operator'])}"
        if imp["bundle_digest"]:
            line += f" sha256:{imp['bundle_digest'][:16]}..."
        lines.append(line)
        if imp["status"] == "refused" or imp.get("reason"):
            lines.append(f"      reason: {_safe(imp['reason'])}")
        lines.extend(f"      {_safe(note)}" for note in detail.get("notes", []))
        skipped = detail.get("skipped", [])
        lines.extend(f"      {s['state']}: {_safe(s['path'])} ({_safe(s['role'])}): {_safe(s['why'])}"
                     for s in skipped[:20])
        if len(skipped) > 20:
            lines.append(f"      ... and {len(skipped) - 20} more")
        if imp["status"] != "refused" and detail and not detail.get("unchanged"):
            before, after = detail.get("versions_before", {}), detail.get("versions_after", {})
            changes = ", ".join(f"{k} {before.get(k, 'none')}->{v}" for k, v in after.items() if before.get(k) != v)
            lines.append(f"      {changes}")
            if detail.get("targets_added"):
                lines.append(f"      added: {', '.join(_safe(p) for p in detail['targets_added'])}")
            if detail.get("targets_removed"):
                lines.append(f"      removed: {', '.join(_safe(p) for p in detail['targets_removed'])}")
    return "\n".join(lines)
